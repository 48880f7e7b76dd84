"""Readers from files to `RawTable`s: delimited text, CSV/TSV, JSON lines, Parquet.

A table is one file, a glob (`events/*.csv`) or a folder (Spark's
`events/month=2024-01/part-0.parquet`: every `KEY=VALUE` folder on a file's
path is a column KEY holding VALUE, Hive partitioning, as `pyarrow.dataset`
reads it). CSV, TSV and JSON lines may be compressed (`.gz`, `.bz2`, `.zst`).

Row numbers are 1-based and counted as in the file (a header is row 1), so
errors point at the line to fix; in a table of several files an error names
the file and its row (`FileParts`). Rows with the wrong number of fields, or
lines that are not JSON objects (or repeat a key), go through the
`RowChecker` as `MalformedRowError`.

Example:

>>> import pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "items.csv"
>>> _ = path.write_text('item_id,title\\n1,"Heat, 1995"\\n')
>>> read_table(path).frame.title.tolist()
['Heat, 1995']
"""

import bisect
import collections
import csv
import dataclasses
import glob
import io
import itertools
import json
import pathlib
import re
import stat
import urllib.parse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset

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
# Compression suffixes of text tables (`events.csv.gz`), as pyarrow names the codecs.
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}
_GLOB = re.compile(r"[*?[]")


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
        lines = [_decode_line(line) for line in _file_bytes(path).splitlines()]
    else:
        with _open_text(path, encoding) as f:
            lines = _LINE_END.split(f.read())
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def check_regular_file(path) -> pathlib.Path:
    """`path` as a `Path`; raises `SourceError` saying what it is when it is not a regular file.

    >>> check_regular_file("/dev/null")
    Traceback (most recent call last):
    tfrec.data.errors.SourceError: /dev/null: is a character device, expected a regular file
    """
    path = pathlib.Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise errors.SourceError("file not found", file=path) from None
    except OSError as error:
        raise errors.SourceError(f"cannot read the file ({error.strerror})", file=path) from None
    if not stat.S_ISREG(mode):
        raise errors.SourceError(f"is {_file_kind(mode)}, expected a regular file", file=path)
    return path


def _file_kind(mode):
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def _file_bytes(path):
    """The bytes of a file, decompressed when its name ends in one of `COMPRESSIONS`."""
    path = check_regular_file(path)
    codec = COMPRESSIONS.get(path.suffix.lower())
    try:
        if codec is None:
            return path.read_bytes()
        with pa.input_stream(str(path), compression=codec) as stream:
            return stream.read()
    except PermissionError:
        raise errors.SourceError("cannot read the file (permission denied)", file=path) from None
    except (OSError, pa.ArrowException) as error:
        raise errors.SourceError(f"not a readable {codec or 'table'} file ({error})", file=path) from None


def _open_text(path, encoding):
    # utf-8-sig reads UTF-8 and drops the byte-order mark Excel writes first.
    encoding = "utf-8-sig" if encoding == "utf-8" else encoding
    return io.TextIOWrapper(io.BytesIO(_file_bytes(path)), encoding=encoding, errors="surrogateescape", newline="")


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
    """Reads JSON lines: one JSON object per line (blank lines inside are malformed rows).

    A key repeated in one object is a malformed row naming the key: JSON parsers
    differ on which value they keep.
    """
    checker = checker or errors.RowChecker()
    lines = _lines(path, "utf-8")
    repeated_keys = []  # the repeated keys of the objects of the line being decoded
    decoder = json.JSONDecoder(object_pairs_hook=lambda pairs: _object(pairs, repeated_keys))  # one for all lines
    records, repeated = [], []
    for line in lines:
        repeated_keys.clear()
        try:
            record = decoder.decode(line)
        except ValueError:
            record = None
        valid = isinstance(record, dict) and not any(UNDECODABLE.search(key) for key in record)
        records.append(record if valid else None)
        repeated.append(repeated_keys[0] if valid and repeated_keys else None)
    bad = np.array([r is None for r in records], dtype=bool)
    rows = np.arange(1, len(lines) + 1)
    keep = checker.check(
        bad, errors.MalformedRowError, path, rows, None, np.array(lines, dtype=object),
        "one JSON object per line, its keys valid UTF-8"
    )
    keep &= checker.check(
        keep & np.array([key is not None for key in repeated], dtype=bool), errors.MalformedRowError, path, rows,
        None, np.array(repeated, dtype=object), "each key once per JSON object (this key is repeated)"
    )
    frame = pd.DataFrame([r for r, k in zip(records, keep) if k], dtype=object)
    return RawTable(frame.where(frame.notna(), None), str(path), rows[keep])


def _object(pairs, repeated):
    """The dict of a JSON object's (key, value) pairs; appends its keys that repeat to `repeated`."""
    record = dict(pairs)
    if len(record) < len(pairs):
        repeated.extend(key for key, count in collections.Counter(key for key, _ in pairs).items() if count > 1)
    return record


def read_parquet(path):
    """Reads a Parquet file; row N is the N-th record (1-based)."""
    return _read_parquet_files([check_regular_file(path)])[0]


def _read_parquet_files(paths):
    """One `RawTable` per Parquet file, read as one `pyarrow.dataset` (so their schemas must agree)."""
    try:
        dataset = pyarrow.dataset.dataset([str(p) for p in paths], format="parquet")
        return [RawTable(fragment.to_table(schema=dataset.schema).to_pandas(), str(path))
                for path, fragment in zip(paths, dataset.get_fragments())]
    except (OSError, pa.ArrowException) as error:  # pyarrow raises several types for corrupt files
        where = paths[0] if len(paths) == 1 else f"{paths[0].parent}/ ({len(paths)} Parquet files)"
        raise errors.SourceError(f"not readable as Parquet ({error})", file=where) from None


def table_format(path) -> str:
    """The format of a table file ("csv", "tsv", "parquet" or "jsonl") from its name, compression suffix aside.

    >>> table_format("events.jsonl.zst")
    'jsonl'
    """
    path = pathlib.Path(path)
    compressed = path.suffix.lower() in COMPRESSIONS
    suffix = pathlib.Path(path.stem).suffix if compressed else path.suffix
    kind = FORMATS.get(suffix.lower())
    if kind is None or (compressed and kind == "parquet"):
        expected = sorted(FORMATS) + [f"{s}{c}" for s in (".csv", ".tsv", ".jsonl") for c in COMPRESSIONS]
        raise errors.SourceError(
            f"unknown table format {''.join(path.suffixes[-2:] if compressed else path.suffixes[-1:])!r}; expected "
            f"a file, glob or folder of {', '.join(expected)} files", file=path)
    return kind


def table_files(path) -> list:
    """The files of a table: `path` itself, the files a glob matches, or those under a folder.

    Under a folder, names starting with "." or "_" (Spark's `_SUCCESS`) are not
    data, as `pyarrow.dataset` skips them. Returns sorted `Path`s.
    """
    text = str(path)
    if _GLOB.search(text) and not pathlib.Path(text).exists():
        files = sorted(pathlib.Path(p) for p in glob.glob(text, recursive=True) if not pathlib.Path(p).is_dir())
        if not files:
            raise errors.SourceError("no file matches this pattern", file=text)
        return files
    path = pathlib.Path(path)
    if not path.is_dir():
        return [check_regular_file(path)]
    files = sorted(p for p in path.rglob("*") if not p.is_dir()
                   and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts))
    if not files:
        raise errors.SourceError("the folder holds no table files", file=path)
    return files


def _partition_base(path) -> pathlib.Path:
    """The folder under which `KEY=VALUE` folders are partitions: a folder itself, a glob's folder
    before its first pattern (`events/month=*/*.parquet`: events), a file's own folder."""
    path = pathlib.Path(path)
    if path.is_dir():
        return path
    fixed = list(itertools.takewhile(lambda part: not _GLOB.search(part), path.parts))
    return pathlib.Path(*fixed) if len(fixed) < len(path.parts) else path.parent


def partition_values(path, base) -> dict:
    """The Hive partition columns of a file under `base`: its `KEY=VALUE` folders.

    >>> partition_values("events/month=2024-01/part-0.parquet", "events")
    {'month': '2024-01'}
    """
    folders = pathlib.Path(path).relative_to(base).parts[:-1]
    return {urllib.parse.unquote(key): urllib.parse.unquote(value)
            for key, sep, value in (folder.partition("=") for folder in folders) if sep and key}


@dataclasses.dataclass(frozen=True)
class FileParts:
    """The name of a table read from several files; `locate` maps its row numbers back to a file.

    A table of several files numbers its rows one file after the other: file i's
    row r is `starts[i] + r`. `DataError` names the file and its own row.

    >>> parts = FileParts("events/*.csv", ("a.csv", "b.csv"), (0, 10))
    >>> parts.locate(12)
    ('b.csv', 2)
    """

    name: str
    files: tuple
    starts: tuple

    def __str__(self):
        return self.name

    def locate(self, row: int) -> tuple:
        """(file, its row) of a row number of the table."""
        i = bisect.bisect_right(self.starts, row - 1) - 1
        return self.files[i], row - self.starts[i]


def read_table(path, checker=None, delimiter=None):
    """Reads a table: a file, a glob or a folder of files of one format (see `FORMATS`, `COMPRESSIONS`).

    Args:
        path: a .csv, .tsv/.tab, .parquet/.pq or .jsonl/.ndjson file (text
            ones possibly .gz, .bz2 or .zst), a glob of such files, or a folder
            of them (Hive partition folders `KEY=VALUE` below the folder, or
            below a glob's first pattern, become columns).
        checker: `errors.RowChecker` for malformed rows.
        delimiter: overrides the CSV/TSV field delimiter.
    """
    files = table_files(path)
    kinds = {file: table_format(file) for file in files}
    if len(set(kinds.values())) > 1:
        raise errors.SourceError(f"expected files of one format, got {sorted(set(kinds.values()))}", file=path)
    kind = kinds[files[0]]
    if kind == "parquet":
        raws = _read_parquet_files(files)
    elif kind == "jsonl":
        raws = [read_jsonl(file, checker) for file in files]
    else:
        raws = [read_csv(file, delimiter or ("\t" if kind == "tsv" else ","), checker) for file in files]
    base = _partition_base(path)
    for file, raw in zip(files, raws):
        for key, value in partition_values(file, base).items():
            if key not in raw.frame.columns:
                raw.frame[key] = value
    return raws[0] if len(raws) == 1 and files[0] == pathlib.Path(path) else _concatenated(str(path), files, raws)


def _concatenated(name, files, raws):
    """One `RawTable` of the tables of several files, its `file` a `FileParts` naming them."""
    starts = np.cumsum([0] + [int(raw.rows.max(initial=0)) for raw in raws[:-1]])
    rows = np.concatenate([raw.rows + start for raw, start in zip(raws, starts)])
    parts = FileParts(name, tuple(str(f) for f in files), tuple(int(s) for s in starts))
    return RawTable(pd.concat([raw.frame for raw in raws], ignore_index=True), parts, rows)
