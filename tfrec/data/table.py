"""Bring-your-own-data source: CSV, TSV, Parquet or JSON-lines tables.

`table:interactions=FILE,items=FILE[,users=FILE]` reads an interaction log and
an item catalogue (and optional user features); `ColumnMap` says which file
column holds each canonical field. A column named by the user that the file
lacks raises `UnknownColumnError`; a required field with no column raises
`MissingColumnError`.

Example:

>>> ds = load_table({"interactions": "logs.parquet", "items": "items.jsonl"},
...                 ColumnMap(user="customer", item="sku", time="ts"),
...                 time_format="iso")  # doctest: +SKIP
"""

import dataclasses

import pandas as pd

from tfrec.data import errors, readers, schema
from tfrec.data.dataset import assemble, clean_items

FILE_ROLES = ("interactions", "items", "users")


@dataclasses.dataclass
class ColumnMap:
    """File column names of the canonical fields.

    `rating`, `event`, `title`, `description` and `genres` are optional: when
    left at their default and absent from the file, the field is absent (or
    empty text); when set to another name, that column must exist. `text`
    names item columns whose values, in this order, make the item text
    (default: title, genres, description); each must exist.
    """

    user: str = schema.USER_ID
    item: str = schema.ITEM_ID
    time: str = schema.TIMESTAMP
    rating: str = schema.RATING
    event: str = schema.EVENT
    title: str = schema.TITLE
    description: str = schema.DESCRIPTION
    genres: str = schema.GENRES
    text: tuple = ()

    def fields(self, role):
        """(canonical name, file column, required) of the fields of one file role."""
        if role == "interactions":
            return [
                (schema.USER_ID, self.user, True),
                (schema.ITEM_ID, self.item, True),
                (schema.TIMESTAMP, self.time, True),
                (schema.RATING, self.rating, False),
                (schema.EVENT, self.event, False),
            ]
        if role == "items":
            return [
                (schema.ITEM_ID, self.item, True),
                (schema.TITLE, self.title, False),
                (schema.DESCRIPTION, self.description, False),
                (schema.GENRES, self.genres, False),
                *((schema.TEXT_COLUMN_PREFIX + column, column, True) for column in self.text),
            ]
        return [(schema.USER_ID, self.user, True)]


def load_table(files, columns=None, checker=None, delimiter=None, **assemble_options):
    """Loads user-provided tables.

    Args:
        files: dict role -> path, roles "interactions" and "items" required,
            "users" optional.
        columns: `ColumnMap` (default: canonical names).
        checker: `errors.RowChecker` applying the bad-row policy.
        delimiter: overrides the CSV/TSV delimiter.
        **assemble_options: `rating_range`, `time_format`, `genres_separator`,
            `duplicates` (see `dataset.assemble`).

    Returns:
        `InteractionData`.
    """
    unknown = sorted(set(files) - set(FILE_ROLES))
    missing = [role for role in FILE_ROLES[:2] if role not in files]
    if unknown or missing:
        raise errors.SourceError(
            f"table source needs interactions=FILE,items=FILE[,users=FILE]; "
            f"got roles {sorted(files)}" + (f", unknown {unknown}" if unknown else "")
        )
    checker = checker or errors.RowChecker()
    raws = {role: readers.read_table(path, checker, delimiter) for role, path in files.items()}
    name = "table:" + ",".join(f"{role}={path}" for role, path in files.items())
    return assemble_tables(name, raws, columns, checker, **assemble_options)


def load_items(path, columns=None, delimiter=None, genres_separator="|"):
    """Reads and validates an item catalogue file alone, as the `items=` file of the table source.

    Args:
        path: CSV, TSV, Parquet or JSON-lines file.
        columns: `ColumnMap` (its item and text columns are read).
        delimiter: overrides the CSV/TSV delimiter.
        genres_separator: separator of tags in the genres column.

    Returns:
        DataFrame `item_id`, `title`, `description`, `genres` (and any `text.<column>`), file order.

    Raises:
        DataError: naming the file, row and field at fault.
    """
    checker = errors.RowChecker()
    raw = _mapped(readers.read_table(path, checker, delimiter), (columns or ColumnMap()).fields("items"), "items")
    return clean_items(raw, checker, genres_separator)


def assemble_tables(name, raws, columns=None, checker=None, **assemble_options):
    """Maps the columns of raw tables to the canonical fields and validates them.

    Args:
        name: name of the data set.
        raws: dict role -> `RawTable` ("interactions", "items", optional "users"),
            with the file's own column names.
        columns: `ColumnMap` (default: canonical names).
        checker: `errors.RowChecker` applying the bad-row policy.
        **assemble_options: see `dataset.assemble`.

    Returns:
        `InteractionData`.
    """
    columns = columns or ColumnMap()
    checker = checker or errors.RowChecker()
    text = text_columns(raws["items"].frame, columns)
    tables = {role: _mapped(raw, columns.fields(role), role) for role, raw in raws.items()}
    ds = assemble(name, tables["interactions"], tables["items"], tables.get("users"), checker, **assemble_options)
    ds.text_columns = text
    return ds


def text_columns(items: pd.DataFrame, columns: ColumnMap) -> dict:
    """The catalogue columns the item text is made of, and its other columns that hold text.

    "read": `columns.text`, else those of the title, genres and description
    columns the file has; "not_read": the other columns (the item id aside)
    whose values are strings, at least one with a letter (e.g. brand, category).

    >>> items = pd.DataFrame({"sku": ["1"], "title": ["Mug"], "brand": ["Acme"], "price": ["3.5"]})
    >>> text_columns(items, ColumnMap(item="sku"))
    {'read': ['title'], 'not_read': ['brand']}
    """
    read = list(columns.text) or [c for c in (columns.title, columns.genres, columns.description) if c in items]
    not_read = [c for c in items.columns if c not in read and c != columns.item and _holds_text(items[c])]
    return {"read": read, "not_read": not_read}


def _holds_text(values: pd.Series) -> bool:
    present = values.dropna()
    return (len(present) > 0 and present.map(lambda v: isinstance(v, str)).all()
            and present.str.contains(r"[^\W\d_]", regex=True).any())


def _mapped(raw, fields, role):
    """Renames file columns to canonical names, keeping only mapped ones (all columns for users)."""
    present = set(raw.frame.columns)
    renames = {}
    for canonical, column, required in fields:
        if column in present:
            renames[canonical] = column
        elif canonical.startswith(schema.TEXT_COLUMN_PREFIX):
            raise errors.UnknownColumnError(
                f"column {column!r} (DataConfig.text_cols={column}) is not there; "
                f"{errors.columns_of(raw.file, sorted(present))}", file=raw.file)
        elif column != canonical:
            raise errors.UnknownColumnError(
                f"column {column!r} (DataConfig.{_COLUMN_FIELD[canonical]}={column}) is not there; "
                f"{errors.columns_of(raw.file, sorted(present))}", file=raw.file)
        elif required:
            raise errors.MissingColumnError(
                f"the {role} table needs a {canonical!r} column (or name its column with "
                f"DataConfig.{_COLUMN_FIELD[canonical]}=...); {errors.columns_of(raw.file, sorted(present))}",
                file=raw.file,
            )
    if role == "users":
        raw.frame = raw.frame.rename(columns={column: canonical for canonical, column in renames.items()})
    else:  # one file column may feed two fields (e.g. the title, and the text)
        raw.frame = pd.DataFrame({canonical: raw.frame[column] for canonical, column in renames.items()})
    return raw


_COLUMN_FIELD = {  # the `DataConfig` field naming the file column of each canonical field
    schema.USER_ID: "user_col",
    schema.ITEM_ID: "item_col",
    schema.TIMESTAMP: "time_col",
    schema.RATING: "rating_col",
    schema.EVENT: "event_col",
    schema.TITLE: "title_col",
    schema.DESCRIPTION: "description_col",
    schema.GENRES: "genres_col",
}
