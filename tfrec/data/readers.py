"""Readers from files to `RawTable`s: delimited text, CSV/TSV, JSON lines, Parquet.

Row numbers are 1-based and counted as in the file (a header is row 1), so
errors point at the line to fix. Rows with the wrong number of fields, or
lines that are not JSON objects, go through the `RowChecker` as
`MalformedRowError`.

Example:

>>> import pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "items.csv"
>>> _ = path.write_text('item_id,title\\n1,"Heat, 1995"\\n')
>>> read_table(path).frame.title.tolist()
['Heat, 1995']
"""

import collections
import csv
import json
import pathlib
import re

import numpy as np
import pandas as pd

from tfrec.data import errors
from tfrec.data.dataset import RawTable
from tfrec.data.fields import UNDECODABLE

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


# Decode each line as UTF-8 when it is valid UTF-8, else as Latin-1: the MovieLens
# files are Latin-1, but some redistributed copies were re-saved as UTF-8.
UTF8_OR_LATIN1 = "utf-8-or-latin-1"
CSV_FIELD_LIMIT = 16 << 20  # characters in one CSV field (Python's csv module allows 128 KiB by default)
_LINE_END = re.compile("\r\n|\r|\n")


def _decode_line(line):
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("latin-1")


def _lines(path, encoding):
    """The file's lines, without the blank lines that end some published files.

    Lines end at "\\n", "\\r\\n" or "\\r" only: other characters `str.splitlines` breaks on
    (U+2028, U+0085, form feed...) are text inside a line.
    """
    if encoding == UTF8_OR_LATIN1:
        with _open_text(path, "latin-1"):  # checks that the file exists
            pass
        lines = [_decode_line(line) for line in pathlib.Path(path).read_bytes().splitlines()]
    else:
        with _open_text(path, encoding) as f:
            lines = _LINE_END.split(f.read())
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _open_text(path, encoding):
    path = pathlib.Path(path)
    if not path.is_file():
        raise errors.SourceError("file not found", file=path)
    # utf-8-sig reads UTF-8 and drops the byte-order mark Excel writes first.
    encoding = "utf-8-sig" if encoding == "utf-8" else encoding
    return path.open(encoding=encoding, errors="surrogateescape", newline="")


def read_delimited(path, separator, names, checker=None, encoding="utf-8"):
    """Reads a headerless file with one record per line, fields split on `separator`.

    No quoting (the MovieLens `.dat`, `u.data` and `u.item` files).

    Args:
        path: the file.
        separator: field separator, e.g. "\\t", "|" or "::".
        names: the column names, one per field.
        checker: `errors.RowChecker`; default raises on a malformed line.
        encoding: text encoding (undecodable bytes are flagged per field later),
            or `UTF8_OR_LATIN1`.

    Returns:
        `RawTable` of str values.
    """
    lines = _lines(path, encoding)
    fields = [line.split(separator) for line in lines]
    return _checked_records(path, fields, np.arange(1, len(lines) + 1), list(names), separator, checker)


def _checked_records(path, records, rows, names, separator, checker):
    """A `RawTable` of the records that have one field per name; the others are malformed rows."""
    checker = checker or errors.RowChecker()
    rows = np.asarray(rows, dtype=np.int64)
    keep = checker.check(
        np.array([len(r) != len(names) for r in records], dtype=bool),
        errors.MalformedRowError,
        path,
        rows,
        None,
        np.array([separator.join(r) for r in records], dtype=object),
        f"{len(names)} fields ({', '.join(names)}) separated by {separator!r}",
    )
    good = [r for r, k in zip(records, keep) if k]
    return RawTable(pd.DataFrame(good, columns=names, dtype=object), str(path), rows[keep])


def read_csv(path, delimiter=",", checker=None, encoding="utf-8"):
    """Reads a CSV (or TSV) file with a header line and standard quoting.

    Returns:
        `RawTable` of str values ("" for empty fields), columns from the header.
    """
    csv.field_size_limit(CSV_FIELD_LIMIT)
    with _open_text(path, encoding) as f:
        # strict: a quote must close right before a delimiter or a line end, so an unclosed quote
        # raises instead of swallowing the rows after it into one field.
        reader = csv.reader(f, delimiter=delimiter, strict=True)
        records, rows, line = [], [], 0
        try:
            header = next(reader, None)
            if not header:
                raise errors.MissingColumnError("expected a header line naming the columns", file=path, row=1)
            _check_header(path, header)
            line = reader.line_num
            for record in reader:
                if record:  # a blank line (e.g. at the end of a spreadsheet's export) holds no row
                    records.append(record)
                    rows.append(line + 1)
                line = reader.line_num
        except csv.Error as e:
            raise errors.MalformedRowError(
                f"unreadable CSV in the record starting on this row ({e}, reading line {reader.line_num}); "
                "expected each quoted field to close right before a delimiter or the end of a line: "
                "a quote opened here may be unclosed", file=path, row=line + 1) from None
    return _checked_records(path, records, rows, header, delimiter, checker)


def _check_header(path, names):
    """Refuses a header whose column names repeat or hold undecodable bytes: every row depends on it."""
    for name in names:
        if UNDECODABLE.search(name):
            raise errors.UndecodableTextError(
                f"got column name {errors.show(name)}, expected text valid in the file's encoding", file=path, row=1)
    repeated = [name for name, count in collections.Counter(names).items() if count > 1]
    if repeated:
        raise errors.MalformedRowError(f"column {repeated[0]!r} is named twice; expected distinct column names",
                                       file=path, row=1)


def read_jsonl(path, checker=None):
    """Reads JSON lines: one JSON object per line (blank lines inside are malformed rows)."""
    checker = checker or errors.RowChecker()
    lines = _lines(path, "utf-8")
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        valid = isinstance(record, dict) and not any(UNDECODABLE.search(key) for key in record)
        records.append(record if valid else None)
    bad = np.array([r is None for r in records], dtype=bool)
    rows = np.arange(1, len(lines) + 1)
    keep = checker.check(
        bad, errors.MalformedRowError, path, rows, None, np.array(lines, dtype=object),
        "one JSON object per line, its keys valid UTF-8"
    )
    frame = pd.DataFrame([r for r, k in zip(records, keep) if k], dtype=object)
    return RawTable(frame.where(frame.notna(), None), str(path), rows[keep])


def read_parquet(path):
    """Reads a Parquet file; row N is the N-th record (1-based)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise errors.SourceError("file not found", file=path)
    try:
        frame = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for corrupt files
        raise errors.SourceError(f"not a readable Parquet file ({error})", file=path) from error
    return RawTable(frame, str(path))


def read_table(path, checker=None, delimiter=None):
    """Reads a table, the format chosen by the file extension (see `FORMATS`).

    Args:
        path: a .csv, .tsv/.tab, .parquet/.pq or .jsonl/.ndjson file.
        checker: `errors.RowChecker` for malformed rows.
        delimiter: overrides the CSV/TSV field delimiter.
    """
    path = pathlib.Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise errors.SourceError(
            f"unknown table format {path.suffix!r}; expected one of {sorted(FORMATS)}", file=path
        )
    if kind == "parquet":
        return read_parquet(path)
    if kind == "jsonl":
        return read_jsonl(path, checker)
    return read_csv(path, delimiter or ("\t" if kind == "tsv" else ","), checker)
