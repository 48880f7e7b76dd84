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
import time

import numpy as np
import pandas as pd
from absl import logging

from tfrec.data import errors, schema

# Undecodable bytes, as the "surrogateescape" error handler decodes them.
UNDECODABLE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc
_INTEGER = re.compile(r"^-?\d+$")
TIME_FORMATS_HELP = (
    "'unix' (seconds, the default), 'unix_ms' (milliseconds), 'iso' (ISO 8601) "
    "or a strftime pattern such as '%Y-%m-%d %H:%M:%S' (read as UTC)"
)
# Times are plausible from the Unix epoch to this many years after the present.
FUTURE_YEARS = 5
# 1990-01-01: a Unix time in the wrong unit is named as such when, read in the other unit, it
# falls between this and the latest plausible time.
_RECENT = 631_152_000


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
    """

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame | None = None
    skipped: dict = dataclasses.field(default_factory=dict)

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
        time_format: see `TIME_FORMATS_HELP`.
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


def _require(raw, required, what):
    missing = [c for c in required if c not in raw.frame.columns]
    if missing:
        raise errors.MissingColumnError(
            f"{what} needs column(s) {missing}; the file has {list(raw.frame.columns)}",
            file=raw.file,
        )


def _is_empty(values):
    return pd.isna(values) | (values == "")


def _to_text(value, separator):
    """Returns (text, ok) for one raw value of a text field."""
    if isinstance(value, str):
        return value.strip(), True
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "", True
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return str(value), True
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value)), True
    if separator is not None and isinstance(value, (list, tuple, np.ndarray)):
        return separator.join(str(tag) for tag in value), True
    return "", False


def _text_column(raw, field, checker, keep, required, separator=None, identifier=False):
    """Converts one column to stripped str, checking emptiness, type and encoding.

    Args:
        separator: for a tag field, the separator of tags in a string; tags are
            then rejoined with "|" (a list of tags is accepted too).
        identifier: an id field, refused when it holds a control character.
    """
    values = raw.frame[field].to_numpy(dtype=object)
    if pd.api.types.infer_dtype(values, skipna=False) == "string":
        text = np.array([v.strip() for v in values], dtype=object)
        wrong = np.zeros(len(values), dtype=bool)
    else:
        converted = [_to_text(v, separator) for v in values]
        text = np.array([t for t, _ in converted], dtype=object)
        wrong = ~np.array([ok for _, ok in converted], dtype=bool)
    expected = "a string or an integer" + (" or a list of tags" if separator is not None else "")
    keep &= checker.check(keep & wrong, errors.FieldTypeError, raw.file, raw.rows, field, values, expected)
    if separator is not None:
        text = np.array(
            ["|".join(t for t in (x.strip() for x in tags.split(separator)) if t) for tags in text], dtype=object
        )
    if required:
        keep &= checker.check(
            keep & (text == ""), errors.MissingValueError, raw.file, raw.rows, field, values, "a non-empty value"
        )
    joined = "".join(text)  # one scan of the column decides whether any row needs a look
    if UNDECODABLE.search(joined):
        undecodable = np.array([UNDECODABLE.search(t) is not None for t in text], dtype=bool)
        keep &= checker.check(
            keep & undecodable,
            errors.UndecodableTextError,
            raw.file,
            raw.rows,
            field,
            text,
            "text valid in the file's encoding",
        )
        text = np.where(keep, text, "")  # rows already skipped: pandas cannot hold undecodable text
    if identifier and _CONTROL.search(joined):
        found = [_CONTROL.search(t) for t in text]
        bad = np.array([m is not None for m in found], dtype=bool) & keep
        first = found[int(np.flatnonzero(bad)[0])] if bad.any() else None
        where = f" (U+{ord(first.group()):04X} at character {first.start() + 1})" if first else ""
        keep &= checker.check(
            bad, errors.ControlCharacterError, raw.file, raw.rows, field, text, f"an id without control characters{where}"
        )
    return text


def clean_items(raw, checker, genres_separator="|"):
    """The validated item catalogue of a `RawTable` with canonical column names (see `assemble`)."""
    _require(raw, [schema.ITEM_ID], "the item catalogue")
    chosen = any(column.startswith(schema.TEXT_COLUMN_PREFIX) for column in raw.frame.columns)
    if schema.TITLE not in raw.frame.columns and schema.DESCRIPTION not in raw.frame.columns and not chosen:
        raise errors.MissingColumnError(
            f"the item catalogue needs a '{schema.TITLE}' or '{schema.DESCRIPTION}' column; "
            f"the file has {list(raw.frame.columns)}",
            file=raw.file,
        )
    keep = np.ones(len(raw.frame), dtype=bool)
    table = {schema.ITEM_ID: _text_column(raw, schema.ITEM_ID, checker, keep, required=True, identifier=True)}
    for field in schema.TEXT_FIELDS:
        if field in raw.frame.columns:
            separator = genres_separator if field == schema.GENRES else None
            table[field] = _text_column(raw, field, checker, keep, required=False, separator=separator)
        else:
            table[field] = np.full(len(raw.frame), "", dtype=object)
    chosen = [column for column in raw.frame.columns if column.startswith(schema.TEXT_COLUMN_PREFIX)]
    for column in chosen:
        table[column] = _text_column(raw, column, checker, keep, required=False)
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
    _check_unique(raw, table, schema.ITEM_ID, checker, keep)
    return table[keep].reset_index(drop=True)[[schema.ITEM_ID, *schema.TEXT_FIELDS, *chosen]]


def _clean_users(raw, checker):
    _require(raw, [schema.USER_ID], "the user table")
    keep = np.ones(len(raw.frame), dtype=bool)
    table = pd.DataFrame(
        {
            field: _text_column(raw, field, checker, keep, required=field == schema.USER_ID,
                                identifier=field == schema.USER_ID)
            for field in raw.frame.columns
        }
    )
    _check_unique(raw, table, schema.USER_ID, checker, keep)
    return table[keep].reset_index(drop=True)


def _check_unique(raw, table, field, checker, keep):
    ids = table[field].where(keep)
    duplicate = ids.duplicated(keep="first").to_numpy() & keep
    expected = "a unique id"
    if duplicate.any():
        first_id = ids[int(np.flatnonzero(duplicate)[0])]
        expected = f"an id not already on row {raw.rows[int(np.flatnonzero(ids == first_id)[0])]}"
    keep &= checker.check(duplicate, errors.DuplicateIdError, raw.file, raw.rows, field, ids.to_numpy(), expected)


def _clean_interactions(raw, checker, item_ids, user_ids, rating_range, time_format, duplicates):
    _require(raw, [schema.USER_ID, schema.ITEM_ID, schema.TIMESTAMP], "the interaction table")
    keep = np.ones(len(raw.frame), dtype=bool)
    table = {
        schema.USER_ID: _text_column(raw, schema.USER_ID, checker, keep, required=True, identifier=True),
        schema.ITEM_ID: _text_column(raw, schema.ITEM_ID, checker, keep, required=True, identifier=True),
        schema.TIMESTAMP: _timestamps(raw, checker, keep, time_format),
    }
    if schema.RATING in raw.frame.columns:
        table[schema.RATING] = _ratings(raw, checker, keep, rating_range)
    if schema.EVENT in raw.frame.columns:
        events = _text_column(raw, schema.EVENT, checker, keep, required=True)
        table[schema.EVENT] = np.array([e.lower() for e in events], dtype=object)
    table = pd.DataFrame(table)
    for field, known, error, what in (
        (schema.ITEM_ID, item_ids, errors.UnknownItemError, "an item_id of the catalogue"),
        (schema.USER_ID, user_ids, errors.UnknownUserError, "a user_id of the user table"),
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


def _numbers(raw, field, checker, keep, expected):
    """Parses a numeric column; empty -> MissingValueError, non-numeric -> FieldTypeError."""
    values = raw.frame[field].to_numpy(dtype=object)
    empty = _is_empty(values)
    keep &= checker.check(
        keep & empty, errors.MissingValueError, raw.file, raw.rows, field, values, expected
    )
    series = raw.frame[field]
    if series.dtype == bool:
        series = series.astype(object)
    numbers = pd.to_numeric(series.where(~empty, None), errors="coerce").to_numpy(dtype=np.float64)
    return values, empty, numbers


def _ratings(raw, checker, keep, rating_range):
    expected = "a number" + (f" in [{rating_range[0]:g}, {rating_range[1]:g}]" if rating_range else "")
    values, empty, numbers = _numbers(raw, schema.RATING, checker, keep, expected)
    bad_type = ~empty & (np.isnan(numbers) | np.array([isinstance(v, bool) for v in values], dtype=bool))
    keep &= checker.check(keep & bad_type, errors.FieldTypeError, raw.file, raw.rows, schema.RATING, values, expected)
    out = ~(np.abs(numbers) <= np.finfo(np.float32).max)  # stored as float32
    if rating_range:
        out |= (numbers < rating_range[0]) | (numbers > rating_range[1])
    keep &= checker.check(
        keep & out & ~bad_type, errors.RatingRangeError, raw.file, raw.rows, schema.RATING, values, expected
    )
    return np.where(keep, numbers, 0).astype(np.float32)


def _timestamps(raw, checker, keep, time_format):
    field = schema.TIMESTAMP
    series = raw.frame[field]
    values = series.to_numpy(dtype=object)
    if pd.api.types.is_datetime64_any_dtype(series) or time_format not in ("unix", "unix_ms"):
        expected = "a date" if pd.api.types.is_datetime64_any_dtype(series) else f"a time in format {time_format!r}"
        empty = _is_empty(values) | series.isna().to_numpy()
        keep &= checker.check(keep & empty, errors.MissingValueError, raw.file, raw.rows, field, values, expected)
        if pd.api.types.is_datetime64_any_dtype(series):
            times = series.dt.tz_localize("UTC") if series.dt.tz is None else series
        else:
            fmt = "ISO8601" if time_format == "iso" else time_format
            times = pd.to_datetime(series.where(~empty, None), format=fmt, utc=True, errors="coerce")
        bad = ~empty & times.isna().to_numpy()
        seconds = ((times - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        expected = "Unix time in " + ("seconds" if time_format == "unix" else "milliseconds")
        values, empty, seconds = _numbers(raw, field, checker, keep, expected)
        bad = ~empty & ~np.isfinite(seconds)
        if time_format == "unix_ms":
            _check_not_seconds(raw, values, seconds, keep & ~empty & ~bad)
            seconds = seconds / 1000.0
    keep &= checker.check(keep & bad, errors.TimestampError, raw.file, raw.rows, field, values, expected)
    latest = _latest_time()
    implausible = keep & ~empty & ((seconds < 0) | (seconds > latest))
    if implausible.any():
        expected += (f" between 1970-01-01 and {_date(latest)} (UTC); got {_date(seconds[implausible][0])}"
                     + _time_format_hint(seconds[implausible][0], time_format, latest))
    keep &= checker.check(implausible, errors.TimestampError, raw.file, raw.rows, field, values, expected)
    return np.where(keep, np.floor(np.nan_to_num(seconds)), 0).astype(np.int64)


def _latest_time():
    """The latest plausible Unix time (seconds): `FUTURE_YEARS` after the present."""
    return time.time() + FUTURE_YEARS * 365.25 * 86400


def _date(seconds):
    """The UTC date of a Unix time, also for years pandas cannot represent."""
    days = int(seconds // 86400)
    if -100_000 < days < 100_000:
        return (pd.Timestamp(0) + pd.Timedelta(days=days)).strftime("%Y-%m-%d")
    return f"year {1970 + seconds / (365.2425 * 86400):,.0f}"


def _time_format_hint(seconds, time_format, latest):
    if time_format == "unix" and _RECENT <= seconds / 1000 <= latest:
        return "; the value reads as milliseconds: use --time_format=unix_ms"
    return ""


def _check_not_seconds(raw, values, milliseconds, valid):
    """Refuses a `unix_ms` column whose every value reads as a recent time in seconds."""
    if valid.any() and (milliseconds[valid] >= _RECENT).all() and (
        milliseconds[valid] <= _latest_time()
    ).all():
        first = int(np.flatnonzero(valid)[0])
        raise errors.TimestampError(
            f"got {errors.show(values[first])}, expected Unix time in milliseconds; every value of the column "
            f"falls within January 1970 as milliseconds but reads as a time from {_date(milliseconds[valid].min())} "
            f"to {_date(milliseconds[valid].max())} as seconds: use --time_format=unix",
            file=raw.file, row=int(raw.rows[first]), field=schema.TIMESTAMP)
