"""Errors raised on bad input data, and the policy for bad rows.

Every error is a `DataError` naming the file, the row (1-based, as in the
file: for a file with a header line, the first data row is row 2) and the
field at fault, the value found and what was expected. Under
`on_bad_rows="skip"` the row-level errors skip the row instead and are counted
per reason (`RowChecker.skipped`); file-level errors (a missing column, an
unreadable source) always raise.

Example:

>>> checker = RowChecker("skip")
>>> import numpy as np
>>> keep = checker.check(np.array([False, True]), RatingRangeError,
...                      file="u.data", rows=np.array([1, 2]), field="rating",
...                      values=np.array([3.0, 9.0]), expected="a rating in [1, 5]")
>>> keep.tolist(), dict(checker.skipped)
([True, False], {'rating_out_of_range': 1})
"""

import collections

import numpy as np

ON_BAD_ROWS = ("error", "skip")
# Policy for repeated interaction rows (see `dataset.assemble`).
DUPLICATES = ("error", "drop", "keep")


class DataError(ValueError):
    """Bad input data; the message names file, row, field, value and expectation.

    Args:
        message: what is wrong and what was expected.
        file: the file (or source) at fault, or a `readers.FileParts` whose
            `locate(row)` gives the file of `row` in a table of several files.
        row: 1-based row in that file, or None for file-level errors.
        field: the column at fault, or None.
    """

    reason = "bad_data"

    def __init__(self, message, file=None, row=None, field=None):
        if row is not None and hasattr(file, "locate"):  # a table of several files (`readers.FileParts`)
            file, row = file.locate(row)
        where = ", ".join(
            part
            for part in (
                str(file) if file is not None else "",
                f"row {row}" if row is not None else "",
                f"field '{field}'" if field is not None else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.file, self.row, self.field = file, row, field


class SourceError(DataError):
    """The source (`DataConfig.source`) is malformed, or its files are missing or unreadable."""

    reason = "bad_source"


class MissingColumnError(DataError):
    """A required column is absent from a file."""

    reason = "missing_column"


class UnknownColumnError(DataError):
    """A column-mapping flag names a column the file does not have."""

    reason = "unknown_column"


class MalformedRowError(DataError):
    """A row cannot be parsed (wrong number of fields, invalid JSON...)."""

    reason = "malformed_row"


class MissingValueError(DataError):
    """A required field is empty."""

    reason = "missing_value"


class FieldTypeError(DataError):
    """A field holds a value of the wrong type (e.g. a non-numeric rating)."""

    reason = "wrong_type"


class RatingRangeError(DataError):
    """A rating lies outside the allowed range."""

    reason = "rating_out_of_range"


class TimestampError(DataError):
    """A timestamp cannot be parsed or is not a finite time."""

    reason = "invalid_timestamp"


class ControlCharacterError(DataError):
    """An id holds a control character (NUL, another C0 or C1 control, DEL)."""

    reason = "control_character"


class EmptyTextError(DataError):
    """An item has neither a title nor a description."""

    reason = "empty_text"


class UndecodableTextError(DataError):
    """A text field holds bytes that are invalid in the file's encoding."""

    reason = "undecodable_text"


class UnknownItemError(DataError):
    """An interaction names an item id absent from the catalogue."""

    reason = "unknown_item"


class UnknownUserError(DataError):
    """An interaction names a user id absent from the user table."""

    reason = "unknown_user"


class DuplicateIdError(DataError):
    """An item (or user) id appears on more than one row of its table."""

    reason = "duplicate_id"


class DuplicateRowError(DataError):
    """An interaction row repeats an earlier row exactly."""

    reason = "duplicate_row"


class ConflictingRowsError(DataError):
    """Two interaction rows share user, item, time (and event) but differ in rating."""

    reason = "conflicting_rows"


class EmptyDataError(DataError):
    """No interactions are left to work with."""

    reason = "no_data"


class RowChecker:
    """Applies the bad-row policy: raise on the first bad row, or skip and count.

    Args:
        on_bad_rows: "error" (raise the row's `DataError`) or "skip" (drop the
            row and count it under the error's `reason` in `skipped`).
    """

    def __init__(self, on_bad_rows="error"):
        if on_bad_rows not in ON_BAD_ROWS:
            raise ValueError(f"on_bad_rows must be one of {ON_BAD_ROWS}, got {on_bad_rows!r}")
        self.on_bad_rows = on_bad_rows
        self.skipped = collections.Counter()

    def check(self, bad, error, file, rows, field, values, expected):
        """Handles the rows flagged in `bad`.

        Args:
            bad: bool array, True where the row is bad.
            error: the `DataError` subclass to raise.
            file: file name for the message.
            rows: int array of 1-based file rows, aligned with `bad`.
            field: column name for the message.
            values: array of the offending values, aligned with `bad`.
            expected: what a good value looks like, for the message.

        Returns:
            bool array, True for the rows to keep.
        """
        bad = np.asarray(bad, dtype=bool)
        if bad.any():
            if self.on_bad_rows == "error":
                first = int(np.flatnonzero(bad)[0])
                raise error(
                    f"got {show(values[first])}, expected {expected}",
                    file=file,
                    row=int(rows[first]),
                    field=field,
                )
            self.skipped[error.reason] += int(bad.sum())
        return ~bad


def columns_of(file, columns) -> str:
    """"the file has [...]" (or "the DataFrame has", "the files have") naming a table's columns.

    >>> columns_of("items DataFrame", ["sku"])
    "the DataFrame has ['sku']"
    """
    if str(file).endswith("DataFrame"):
        return f"the DataFrame has {list(columns)}"
    return f"the {'files have' if hasattr(file, 'locate') else 'file has'} {list(columns)}"


def show(value):
    """`repr` of a value for a message, cut to 80 characters."""
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= 80 else text[:77] + "..."
