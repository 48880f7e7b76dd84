"""Checks of one column of a raw table: ids and texts, numbers, unique ids, required columns.

Each check takes the `dataset.RawTable`, the `errors.RowChecker` applying the
bad-row policy and `keep`, the rows still kept, which it narrows in place:
a failing row raises the `DataError` naming file, row, field and expectation,
or is skipped (and counted) under `--on_bad_rows=skip`.

Example:

>>> import pandas as pd
>>> from tfrec.data.dataset import RawTable
>>> raw = RawTable(pd.DataFrame({"item_id": [" a ", 7]}), "items.csv")
>>> keep = np.ones(2, dtype=bool)
>>> text_column(raw, "item_id", errors.RowChecker(), keep, required=True, identifier=True).tolist()
['a', '7']
"""

import re
import unicodedata
from typing import Optional

import numpy as np
import pandas as pd

from tfrec.data import errors

# Undecodable bytes, as the "surrogateescape" error handler decodes them.
UNDECODABLE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc


def require_columns(raw, required: list, what: str) -> None:
    """Raises `MissingColumnError` naming the `required` columns `raw` lacks (`what` names the table)."""
    missing = [c for c in required if c not in raw.frame.columns]
    if missing:
        raise errors.MissingColumnError(
            f"{what} needs column(s) {missing}; {errors.columns_of(raw.file, raw.frame.columns)}",
            file=raw.file,
        )


def is_empty(values: np.ndarray) -> np.ndarray:
    """Which raw values are missing: None, NaN or the empty string."""
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


def text_column(raw, field: str, checker: errors.RowChecker, keep: np.ndarray, required: bool,
                separator: Optional[str] = None, identifier: bool = False) -> np.ndarray:
    """Converts one column to stripped str, checking emptiness, type and encoding.

    Args:
        separator: for a tag field, the separator of tags in a string; tags are
            then rejoined with "|" (a list of tags is accepted too).
        identifier: an id field, refused when it holds a control character, and
            NFC-normalised: "café" typed with a combining accent (NFD) and with
            "é" (NFC) print alike, so they are one id.
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
    if identifier and not joined.isascii():
        text = np.array([unicodedata.normalize("NFC", t) for t in text], dtype=object)
    if identifier and _CONTROL.search(joined):
        found = [_CONTROL.search(t) for t in text]
        bad = np.array([m is not None for m in found], dtype=bool) & keep
        first = found[int(np.flatnonzero(bad)[0])] if bad.any() else None
        where = f" (U+{ord(first.group()):04X} at character {first.start() + 1})" if first else ""
        keep &= checker.check(
            bad, errors.ControlCharacterError, raw.file, raw.rows, field, text, f"an id without control characters{where}"
        )
    return text


def check_unique(raw, table: pd.DataFrame, field: str, checker: errors.RowChecker, keep: np.ndarray) -> None:
    """Refuses (or skips) a kept row whose `field` repeats an earlier kept row's, naming that row."""
    ids = table[field].where(keep)
    duplicate = ids.duplicated(keep="first").to_numpy() & keep
    expected = "a unique id"
    if duplicate.any():
        first_id = ids[int(np.flatnonzero(duplicate)[0])]
        expected = f"an id not already on row {raw.rows[int(np.flatnonzero(ids == first_id)[0])]}"
    keep &= checker.check(duplicate, errors.DuplicateIdError, raw.file, raw.rows, field, ids.to_numpy(), expected)


def numeric_column(raw, field: str, checker: errors.RowChecker, keep: np.ndarray, expected: str) -> tuple:
    """(raw values, which are empty, float64 numbers: NaN where not numeric) of a column; an empty
    value is a `MissingValueError` (the caller checks the numbers)."""
    values = raw.frame[field].to_numpy(dtype=object)
    empty = is_empty(values)
    keep &= checker.check(
        keep & empty, errors.MissingValueError, raw.file, raw.rows, field, values, expected
    )
    series = raw.frame[field]
    if series.dtype == bool:
        series = series.astype(object)
    numbers = pd.to_numeric(series.where(~empty, None), errors="coerce").to_numpy(dtype=np.float64)
    return values, empty, numbers
