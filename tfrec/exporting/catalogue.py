"""The item catalogue an export serves: ids in index order and their texts.

Index 0 is padding (item id ""), real items are 1..num_items, exactly as in
`tfrec.data.Vocabulary`. `read_update` parses a file of new items
(`--update_catalog`) and validates it against the catalogue.

Example:

>>> cat = Catalogue(["", "i1", "i2"], ["", "Alien. Sci-Fi", "Heat. Crime"])
>>> cat.num_items
2
>>> cat.extended(["i3"], ["Up. Animation"]).item_ids
['', 'i1', 'i2', 'i3']
"""

import csv
import json
import os

from tfrec.data import errors

ITEM_ID = "item_id"
TEXT = "text"
UPDATE_FORMATS = (".csv", ".jsonl")
_FORBIDDEN_ID_CHARACTERS = ("\n", "\r")


class Catalogue:
    """Item ids and texts in index order, entry 0 being the padding "".

    Args:
        item_ids: list of str, `item_ids[0] == ""`, the others unique and
            non-empty without line breaks (they are stored one per line).
        item_texts: list of str aligned with `item_ids`.
    """

    def __init__(self, item_ids, item_texts):
        item_ids, item_texts = list(item_ids), list(item_texts)
        if not item_ids or item_ids[0] != "":
            raise ValueError('item_ids[0] must be the padding id ""')
        if len(item_ids) != len(item_texts):
            raise ValueError(
                f"got {len(item_ids)} item ids but {len(item_texts)} item texts"
            )
        seen = set()
        for index, item_id in enumerate(item_ids[1:], start=1):
            _check_id(item_id, f"item id at index {index}")
            if item_id in seen:
                raise ValueError(f"item id {item_id!r} appears twice in the catalogue")
            seen.add(item_id)
        self.item_ids = item_ids
        self.item_texts = item_texts

    @property
    def num_items(self):
        """Number of real items (padding excluded)."""
        return len(self.item_ids) - 1

    def extended(self, new_ids, new_texts):
        """Returns a new catalogue with `new_ids` appended (indices after the last)."""
        return Catalogue(self.item_ids + list(new_ids), self.item_texts + list(new_texts))

    def write_ids(self, path):
        """Writes the real item ids, one per line: line i holds index i + 1."""
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            for item_id in self.item_ids[1:]:
                f.write(item_id + "\n")

    def write_jsonl(self, path):
        """Writes one `{"item_id", "text"}` object per real item, in index order."""
        with open(path, "w", encoding="utf-8") as f:
            for item_id, text in zip(self.item_ids[1:], self.item_texts[1:]):
                f.write(json.dumps({ITEM_ID: item_id, TEXT: text}, ensure_ascii=False) + "\n")


def _check_id(item_id, where):
    if not isinstance(item_id, str) or not item_id:
        raise ValueError(f"{where}: expected a non-empty string, got {item_id!r}")
    if any(c in item_id for c in _FORBIDDEN_ID_CHARACTERS):
        raise ValueError(f"{where}: item id {item_id!r} contains a line break")


def read_update(path, catalogue):
    """Reads new items to add to `catalogue` from a CSV or JSONL file.

    The file has one item per row with fields `item_id` and `text` (CSV: a
    header line; JSONL: one JSON object per line). Every id must be new
    (changing the text of an existing item needs retraining), unique in the
    file and free of line breaks; every text non-empty.

    Args:
        path: `.csv` or `.jsonl` file.
        catalogue: the `Catalogue` being extended.

    Returns:
        (new_ids, new_texts): two lists of str, in file order.

    Raises:
        tfrec.data.errors.DataError (a ValueError) subclass naming the file,
        row and field at fault.
    """
    extension = os.path.splitext(path)[1].lower()
    if extension not in UPDATE_FORMATS:
        raise errors.SourceError(
            f"unsupported catalogue update format {extension!r}, expected one of {UPDATE_FORMATS}",
            file=path,
        )
    if not os.path.isfile(path):
        raise errors.SourceError("catalogue update file not found", file=path)
    rows = _read_csv(path) if extension == ".csv" else _read_jsonl(path)
    known = set(catalogue.item_ids)
    first_row = {}
    new_ids, new_texts = [], []
    for row_number, row in rows:
        item_id = _field(row, ITEM_ID, path, row_number)
        text = _field(row, TEXT, path, row_number)
        if any(c in item_id for c in _FORBIDDEN_ID_CHARACTERS):
            raise errors.FieldTypeError(
                f"got {item_id!r}, expected an id without line breaks",
                file=path, row=row_number, field=ITEM_ID,
            )
        if item_id in known:
            raise errors.DuplicateIdError(
                f"item {item_id!r} is already in the catalogue; only new items can be "
                "added without retraining",
                file=path, row=row_number, field=ITEM_ID,
            )
        if item_id in first_row:
            raise errors.DuplicateIdError(
                f"item {item_id!r} already appears on row {first_row[item_id]}",
                file=path, row=row_number, field=ITEM_ID,
            )
        first_row[item_id] = row_number
        new_ids.append(item_id)
        new_texts.append(text)
    if not new_ids:
        raise errors.EmptyDataError("catalogue update file holds no items", file=path)
    return new_ids, new_texts


def _field(row, name, path, row_number):
    if name not in row:
        raise errors.MissingColumnError(
            f"missing field, expected fields {ITEM_ID!r} and {TEXT!r}",
            file=path, row=row_number, field=name,
        )
    value = row[name]
    if not isinstance(value, str):
        raise errors.FieldTypeError(
            f"got {value!r}, expected a string", file=path, row=row_number, field=name
        )
    if not value.strip():
        raise errors.MissingValueError(
            f"got {value!r}, expected a non-empty string",
            file=path, row=row_number, field=name,
        )
    return value


def _read_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise errors.EmptyDataError("catalogue update file is empty", file=path)
        for column in (ITEM_ID, TEXT):
            if column not in header:
                raise errors.MissingColumnError(
                    f"header {header} lacks column {column!r}", file=path, row=1, field=column
                )
        for values in reader:
            row_number = reader.line_num
            if not values:
                continue  # a blank line holds no item
            if len(values) != len(header):
                raise errors.MalformedRowError(
                    f"got {len(values)} fields, expected {len(header)} as in the header",
                    file=path, row=row_number,
                )
            yield row_number, dict(zip(header, values))


def _read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        for row_number, line in enumerate(f, start=1):
            if not line.strip():
                continue  # a blank line holds no item
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise errors.MalformedRowError(
                    f"invalid JSON ({e.msg})", file=path, row=row_number
                ) from None
            if not isinstance(row, dict):
                raise errors.MalformedRowError(
                    f"got {type(row).__name__}, expected a JSON object", file=path, row=row_number
                )
            yield row_number, row
