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

from tfrec.data import errors, readers, schema
from tfrec.data.dataset import assemble

FILE_ROLES = ("interactions", "items", "users")


@dataclasses.dataclass
class ColumnMap:
    """File column names of the canonical fields.

    `rating`, `event`, `title`, `description` and `genres` are optional: when
    left at their default and absent from the file, the field is absent (or
    empty text); when set to another name, that column must exist.
    """

    user: str = schema.USER_ID
    item: str = schema.ITEM_ID
    time: str = schema.TIMESTAMP
    rating: str = schema.RATING
    event: str = schema.EVENT
    title: str = schema.TITLE
    description: str = schema.DESCRIPTION
    genres: str = schema.GENRES

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
        **assemble_options: `rating_range`, `time_format`, `genres_separator`
            (see `dataset.assemble`).

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
    columns = columns or ColumnMap()
    checker = checker or errors.RowChecker()
    tables = {
        role: _mapped(readers.read_table(path, checker, delimiter), columns.fields(role), role)
        for role, path in files.items()
    }
    name = "table:" + ",".join(f"{role}={path}" for role, path in files.items())
    return assemble(name, tables["interactions"], tables["items"], tables.get("users"), checker, **assemble_options)


def _mapped(raw, fields, role):
    """Renames file columns to canonical names, keeping only mapped ones (all columns for users)."""
    present = set(raw.frame.columns)
    renames = {}
    for canonical, column, required in fields:
        if column in present:
            renames[column] = canonical
        elif column != canonical:
            raise errors.UnknownColumnError(
                f"column {column!r} (given for {canonical}) is not in the file; it has {sorted(present)}",
                file=raw.file,
            )
        elif required:
            raise errors.MissingColumnError(
                f"the {role} table needs a {canonical!r} column (or name it with --{_FLAG[canonical]}); "
                f"the file has {sorted(present)}",
                file=raw.file,
            )
    keep = list(raw.frame.columns) if role == "users" else list(renames)
    raw.frame = raw.frame[keep].rename(columns=renames)
    return raw


_FLAG = {
    schema.USER_ID: "user_col",
    schema.ITEM_ID: "item_col",
    schema.TIMESTAMP: "time_col",
}
