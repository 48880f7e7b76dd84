"""The loaded data set: validated, canonical interaction, item and user tables.

Sources read their files into `RawTable`s (canonical column names, values as
found) and call `assemble`, which validates every field, applies the bad-row
policy and returns an `InteractionData` whose tables follow `schema.py`.

Example:

>>> import pandas as pd
>>> items = RawTable(pd.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"]}), "items.csv")
>>> logs = RawTable(pd.DataFrame({"user_id": ["u", "u"], "item_id": ["b", "a"],
...                               "timestamp": ["20", "10"]}), "logs.csv")
>>> assemble("toy", logs, items).interactions.item_id.tolist()
['a', 'b']
"""

import dataclasses
import re

import numpy as np
import pandas as pd
from absl import logging

from tfrec.data import errors, schema
from tfrec.data.fields import check_unique, numeric_column, require_columns, text_column
from tfrec.data.timestamps import timestamp_column

_INTEGER = re.compile(r"^-?\d+$")


@dataclasses.dataclass
class RawTable:
    """A table as read from one file, before validation.

    Args:
        frame: DataFrame with canonical column names; values as read (str, number,
            list for tags, None for empty).
        file: the file it came from, named in error messages.
        rows: 1-based row numbers in the file, aligned with `frame`; defaults to
            1..len(frame) (files without a header line).
    """

    frame: pd.DataFrame
    file: str
    rows: np.ndarray = None

    def __post_init__(self):
        self.frame = self.frame.reset_index(drop=True)
        if self.rows is None:
            self.rows = np.arange(1, len(self.frame) + 1)
        self.rows = np.asarray(self.rows, dtype=np.int64)


@dataclasses.dataclass
class InteractionData:
    """A validated data set.

    Attributes:
        name: the source it was loaded from.
        interactions: DataFrame with `user_id`, `item_id` (str), `timestamp`
            (int64, Unix seconds) and optionally `rating` (float32) and `event`
            (str), sorted by user, timestamp, item (ids in natural order).
        items: catalogue DataFrame `item_id`, `title`, `description`, `genres`
            (str; genres "|"-separated), in natural id order.
        users: DataFrame `user_id` plus feature columns (str), or None.
        skipped: rows skipped under `on_bad_rows="skip"`, count per reason.
        text_columns: for tables, the catalogue's columns the item text is made
            of ("read") and its other columns holding text ("not_read"), as
            named in the file; None when the source has fixed columns.
    """

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame | None = None
    skipped: dict = dataclasses.field(default_factory=dict)
    text_columns: dict | None = None

    @property
    def has_ratings(self):
        return schema.RATING in self.interactions.columns

    @property
    def has_events(self):
        return schema.EVENT in self.interactions.columns


def natural_order(ids):
    """Returns the unique `ids` sorted numerically if all are integers, else as text.

    >>> natural_order(["10", "9", "9"])
    ['9', '10']
    """
    unique = pd.unique(np.asarray(ids, dtype=object))
    if len(unique) and all(_INTEGER.match(i) for i in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def assemble(
    name,
    interactions,
    items,
    users=None,
    checker=None,
    rating_range=None,
    time_format="unix",
    genres_separator="|",
    duplicates="error",
):
    """Validates raw tables and returns the canonical `InteractionData`.

    Args:
        name: name of the data set (usually the `--source` value).
        interactions: `RawTable` with `user_id`, `item_id`, `timestamp` and
            optionally `rating`, `event`.
        items: `RawTable` with `item_id` and at least one of `title`,
            `description`; optionally `genres` (str split on `genres_separator`,
            or a list of tags).
        users: optional `RawTable` with `user_id` and feature columns.
        checker: the `errors.RowChecker` applying the bad-row policy (and holding
            the counts of rows the readers already skipped); default: raise.
        rating_range: (low, high) inclusive bounds for ratings, or None for any
            finite number.
        time_format: see `timestamps.TIME_FORMATS_HELP`.
        genres_separator: separator of tags in a string `genres` field.
        duplicates: policy for interaction rows that repeat an earlier row
            exactly, or share its user, item, time (and event) with another
            rating: "error" raises on the first; "drop" drops exact repeats,
            counted under "duplicate_row" in `skipped`, and raises on
            conflicting ones; "keep" keeps all, logging their counts.

    Returns:
        `InteractionData`.

    Raises:
        DataError: a subclass naming file, row, field and what was expected.
    """
    if duplicates not in errors.DUPLICATES:
        raise ValueError(f"duplicates must be one of {errors.DUPLICATES}, got {duplicates!r}")
    checker = checker or errors.RowChecker()
    item_table = clean_items(items, checker, genres_separator)
    user_table = _clean_users(users, checker) if users is not None else None
    logs = _clean_interactions(
        interactions,
        checker,
        item_table[schema.ITEM_ID],
        user_table[schema.USER_ID] if user_table is not None else None,
        rating_range,
        time_format,
        duplicates,
    )
    if logs.empty:
        raise errors.EmptyDataError(
            f"no interactions left (skipped: {dict(checker.skipped) or 'none'})",
            file=interactions.file,
        )
    logs, item_table = _sorted(logs, item_table)
    if checker.skipped:
        logging.warning("%s: skipped bad rows (count per reason): %s", name, dict(checker.skipped))
    return InteractionData(name, logs, item_table, user_table, dict(checker.skipped))


def _sorted(logs, items):
    """Items in natural id order; behaviours by user (natural order), timestamp, item."""
    item_order = pd.Index(natural_order(items[schema.ITEM_ID]))
    items = items.set_index(schema.ITEM_ID).loc[item_order].reset_index()
    user_order = pd.Index(natural_order(logs[schema.USER_ID]))
    order = np.lexsort(
        (
            item_order.get_indexer(logs[schema.ITEM_ID]),
            logs[schema.TIMESTAMP].to_numpy(),
            user_order.get_indexer(logs[schema.USER_ID]),
        )
    )
    return logs.iloc[order].reset_index(drop=True), items


def combine(earlier: InteractionData, later: InteractionData) -> InteractionData:
    """One data set of two: both logs (a row in both once), both catalogues (an item in both keeps
    `later`'s text), sorted as `assemble` sorts. User feature tables are not combined.

    Raises:
        SourceError: the two have different interaction or item columns.
    """
    for table in ("interactions", "items"):
        first, second = getattr(earlier, table).columns, getattr(later, table).columns
        if set(first) != set(second):
            raise errors.SourceError(f"cannot combine {earlier.name} and {later.name}: their {table} have columns "
                                     f"{sorted(first)} and {sorted(second)}")
    logs = pd.concat([earlier.interactions, later.interactions[earlier.interactions.columns]], ignore_index=True)
    items = pd.concat([later.items, earlier.items[later.items.columns]], ignore_index=True)
    logs, items = _sorted(logs.drop_duplicates(ignore_index=True),
                          items.drop_duplicates(schema.ITEM_ID, ignore_index=True))
    return InteractionData(f"{earlier.name} + {later.name}", logs, items)


# Said where a log commonly holds some rows the tables cannot explain (items since removed...).
_SKIP_HINT = " (DataConfig.on_bad_rows=skip skips such rows and counts them)"


def clean_items(raw, checker, genres_separator="|"):
    """The validated item catalogue of a `RawTable` with canonical column names (see `assemble`)."""
    require_columns(raw, [schema.ITEM_ID], "the item catalogue")
    chosen = any(column.startswith(schema.TEXT_COLUMN_PREFIX) for column in raw.frame.columns)
    if schema.TITLE not in raw.frame.columns and schema.DESCRIPTION not in raw.frame.columns and not chosen:
        raise errors.MissingColumnError(
            f"the item catalogue needs a '{schema.TITLE}' or '{schema.DESCRIPTION}' column; "
            f"{errors.columns_of(raw.file, raw.frame.columns)}",
            file=raw.file,
        )
    keep = np.ones(len(raw.frame), dtype=bool)
    table = {schema.ITEM_ID: text_column(raw, schema.ITEM_ID, checker, keep, required=True, identifier=True)}
    for field in schema.TEXT_FIELDS:
        if field in raw.frame.columns:
            separator = genres_separator if field == schema.GENRES else None
            table[field] = text_column(raw, field, checker, keep, required=False, separator=separator)
        else:
            table[field] = np.full(len(raw.frame), "", dtype=object)
    chosen = [column for column in raw.frame.columns if column.startswith(schema.TEXT_COLUMN_PREFIX)]
    for column in chosen:
        table[column] = text_column(raw, column, checker, keep, required=False)
    table = pd.DataFrame(table)
    text_fields = chosen or [schema.TITLE, schema.DESCRIPTION, schema.GENRES]
    no_text = (table[text_fields] == "").all(axis=1)
    keep &= checker.check(
        keep & no_text.to_numpy(dtype=bool),
        errors.EmptyTextError,
        raw.file,
        raw.rows,
        text_fields[0].removeprefix(schema.TEXT_COLUMN_PREFIX),
        table[text_fields[0]].to_numpy(),
        f"a non-empty {' or '.join(name.removeprefix(schema.TEXT_COLUMN_PREFIX) for name in text_fields)}",
    )
    check_unique(raw, table, schema.ITEM_ID, checker, keep)
    return table[keep].reset_index(drop=True)[[schema.ITEM_ID, *schema.TEXT_FIELDS, *chosen]]


def _clean_users(raw, checker):
    require_columns(raw, [schema.USER_ID], "the user table")
    keep = np.ones(len(raw.frame), dtype=bool)
    table = pd.DataFrame(
        {
            field: text_column(raw, field, checker, keep, required=field == schema.USER_ID,
                                identifier=field == schema.USER_ID)
            for field in raw.frame.columns
        }
    )
    check_unique(raw, table, schema.USER_ID, checker, keep)
    return table[keep].reset_index(drop=True)



def _clean_interactions(raw, checker, item_ids, user_ids, rating_range, time_format, duplicates):
    require_columns(raw, [schema.USER_ID, schema.ITEM_ID, schema.TIMESTAMP], "the interaction table")
    keep = np.ones(len(raw.frame), dtype=bool)
    table = {
        schema.USER_ID: text_column(raw, schema.USER_ID, checker, keep, required=True, identifier=True),
        schema.ITEM_ID: text_column(raw, schema.ITEM_ID, checker, keep, required=True, identifier=True),
        schema.TIMESTAMP: timestamp_column(raw, checker, keep, time_format),
    }
    if schema.RATING in raw.frame.columns:
        table[schema.RATING] = _ratings(raw, checker, keep, rating_range)
    if schema.EVENT in raw.frame.columns:
        events = text_column(raw, schema.EVENT, checker, keep, required=True, identifier=True)
        table[schema.EVENT] = np.array([e.lower() for e in events], dtype=object)
    table = pd.DataFrame(table)
    for field, known, error, what in (
        (schema.ITEM_ID, item_ids, errors.UnknownItemError, "an item_id of the catalogue" + _SKIP_HINT),
        (schema.USER_ID, user_ids, errors.UnknownUserError, "a user_id of the user table" + _SKIP_HINT),
    ):
        if known is not None:
            unknown = ~table[field].isin(set(known)).to_numpy()
            keep &= checker.check(keep & unknown, error, raw.file, raw.rows, field, table[field].to_numpy(), what)
    _check_duplicates(raw, table, keep, duplicates, checker)
    return table[keep].reset_index(drop=True)


def _check_duplicates(raw, table, keep, policy, checker):
    """Applies the `duplicates` policy (see `assemble`) to the kept rows of the interaction table."""
    positions = np.flatnonzero(keep)
    kept = table.iloc[positions]
    key = [schema.USER_ID, schema.ITEM_ID, schema.TIMESTAMP] + ([schema.EVENT] if schema.EVENT in table else [])
    exact = kept.duplicated(keep="first").to_numpy()
    conflict = kept.duplicated(key, keep="first").to_numpy() & ~exact
    if policy == "keep":
        if exact.any() or conflict.any():
            logging.warning("%s: kept %d exact duplicate and %d conflicting interaction rows (duplicates='keep')",
                            raw.file, exact.sum(), conflict.sum())
        return
    if exact.any() and policy == "drop":
        keep[positions[exact]] = False
        checker.skipped[errors.DuplicateRowError.reason] += int(exact.sum())
    elif exact.any():
        first, earlier = _first_repeat(kept, list(kept.columns), exact)
        raise errors.DuplicateRowError(
            f"this row repeats row {raw.rows[positions[earlier]]} exactly ({int(exact.sum())} such repeated rows); "
            "use --duplicates=drop to keep the first of each, or --duplicates=keep to keep them all",
            file=raw.file, row=int(raw.rows[positions[first]]))
    if conflict.any():
        first, earlier = _first_repeat(kept, key, conflict)
        this, other = kept.iloc[first], kept.iloc[earlier]
        raise errors.ConflictingRowsError(
            f"user {this[schema.USER_ID]!r}, item {this[schema.ITEM_ID]!r} at time {this[schema.TIMESTAMP]} has "
            f"rating {this[schema.RATING]:g} here and {other[schema.RATING]:g} on row {raw.rows[positions[earlier]]} "
            f"({int(conflict.sum())} such conflicting rows); expected one rating per user, item and time: "
            "fix the file, or use --duplicates=keep to keep every row",
            file=raw.file, row=int(raw.rows[positions[first]]), field=schema.RATING)


def _first_repeat(frame, columns, repeated):
    """(position of the first `repeated` row, position of the earliest row with the same `columns`)."""
    group = frame.groupby(columns, sort=False, dropna=False).ngroup().to_numpy()
    first = int(np.flatnonzero(repeated)[0])
    return first, int(np.flatnonzero(group == group[first])[0])



def _ratings(raw, checker, keep, rating_range):
    expected = "a number" + (f" in [{rating_range[0]:g}, {rating_range[1]:g}]" if rating_range else "")
    values, empty, numbers = numeric_column(raw, schema.RATING, checker, keep, expected)
    bad_type = ~empty & (np.isnan(numbers) | np.array([isinstance(v, bool) for v in values], dtype=bool))
    keep &= checker.check(keep & bad_type, errors.FieldTypeError, raw.file, raw.rows, schema.RATING, values, expected)
    out = ~(np.abs(numbers) <= np.finfo(np.float32).max)  # stored as float32
    if rating_range:
        out |= (numbers < rating_range[0]) | (numbers > rating_range[1])
    keep &= checker.check(
        keep & out & ~bad_type, errors.RatingRangeError, raw.file, raw.rows, schema.RATING, values, expected
    )
    return np.where(keep, numbers, 0).astype(np.float32)
