"""The item catalogue an export serves: ids in index order and their texts.

Index 0 is padding (item id ""), real items are 1..num_items, exactly as in
`tfrec.data.Vocabulary`. `read_update` parses a file of new items
(`--update_catalog`, the table source's item format) and validates it against
the catalogue; `read_jsonl` reads an export's catalogue back, so that a new
version keeps the items an earlier update added.

Example:

>>> cat = Catalogue(["", "i1", "i2"], ["", "Alien. Sci-Fi", "Heat. Crime"])
>>> cat.num_items
2
>>> cat.extended(["i3"], ["Up. Animation"]).item_ids
['', 'i1', 'i2', 'i3']
"""

import json
import os

from tfrec.data import DataConfig, errors, schema, table, texts
from tfrec.data.vocabulary import Vocabulary

ITEM_ID = "item_id"
TEXT = "text"
TITLE = "title"
_FORBIDDEN_ID_CHARACTERS = ("\n", "\r")


class Catalogue:
    """Item ids, texts and titles in index order, entry 0 being the padding "".

    Args:
        item_ids: list of str, `item_ids[0] == ""`, the others unique and
            non-empty without line breaks (they are stored one per line).
        item_texts: list of str aligned with `item_ids`.
        item_titles: list of str aligned with `item_ids`; default: each text's
            first sentence (as `tfrec.data.item_titles` names an item without a title).
    """

    def __init__(self, item_ids, item_texts, item_titles=None):
        item_ids, item_texts = list(item_ids), list(item_texts)
        if not item_ids or item_ids[0] != "":
            raise ValueError('item_ids[0] must be the padding id ""')
        item_titles = [texts.title_from_text(t) for t in item_texts] if item_titles is None else list(item_titles)
        if not len(item_ids) == len(item_texts) == len(item_titles):
            raise ValueError(
                f"got {len(item_ids)} item ids but {len(item_texts)} item texts and {len(item_titles)} titles"
            )
        seen = set()
        for index, item_id in enumerate(item_ids[1:], start=1):
            _check_id(item_id, f"item id at index {index}")
            if item_id in seen:
                raise ValueError(f"item id {item_id!r} appears twice in the catalogue")
            seen.add(item_id)
        self.item_ids = item_ids
        self.item_texts = item_texts
        self.item_titles = item_titles

    @property
    def num_items(self):
        """Number of real items (padding excluded)."""
        return len(self.item_ids) - 1

    def extended(self, new_ids, new_texts, new_titles=None):
        """Returns a new catalogue with `new_ids` appended (indices after the last)."""
        new_titles = [texts.title_from_text(t) for t in new_texts] if new_titles is None else list(new_titles)
        return Catalogue(self.item_ids + list(new_ids), self.item_texts + list(new_texts),
                         self.item_titles + new_titles)

    def write_ids(self, path):
        """Writes the real item ids, one per line: line i holds index i + 1."""
        write_lines(path, self.item_ids[1:])

    def write_titles(self, path):
        """Writes the real items' titles, one per line (line breaks inside made spaces): line i holds index i + 1."""
        write_lines(path, (" ".join(title.splitlines()) for title in self.item_titles[1:]))

    def write_jsonl(self, path):
        """Writes one `{"item_id", "text", "title"}` object per real item, in index order."""
        with open(path, "w", encoding="utf-8") as f:
            for item_id, text, title in zip(self.item_ids[1:], self.item_texts[1:], self.item_titles[1:]):
                f.write(json.dumps({ITEM_ID: item_id, TEXT: text, TITLE: title}, ensure_ascii=False) + "\n")


def write_lines(path, values):
    """Writes one value per line (the lookup-table files of the serving module); returns `path`."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(f"{value}\n" for value in values)
    return path


def _check_id(item_id, where):
    if not isinstance(item_id, str) or not item_id:
        raise ValueError(f"{where}: expected a non-empty string, got {item_id!r}")
    if any(c in item_id for c in _FORBIDDEN_ID_CHARACTERS):
        raise ValueError(f"{where}: item id {item_id!r} contains a line break")


def read_update(path, catalogue, data_config=None):
    """Reads new items to add to `catalogue` from an item file of the table source's format.

    The file (CSV, TSV, Parquet or JSON lines) has the columns of the items
    file the run was trained on (`data_config`: item column, title /
    description / genres or `text_cols`), validated as the `table:` source
    validates it; or the two columns `item_id` and `text` (the text as the
    encoder reads it). Every id must be new (changing the text of an
    existing item needs retraining) and unique in the file.

    Args:
        path: the item file.
        catalogue: the `Catalogue` being extended.
        data_config: the run's `tfrec.data.DataConfig` (default: canonical column names).

    Returns:
        (new_ids, new_texts, new_titles): three lists of str, in file order.

    Raises:
        tfrec.data.errors.DataError (a ValueError) subclass naming the file,
        row and field at fault.
    """
    config = data_config or DataConfig()
    if not os.path.isfile(path):
        raise errors.SourceError("catalogue update file not found", file=path)
    try:
        items = table.load_items(path, config.columns(), config.delimiter, config.genres_separator)
    except (errors.MissingColumnError, errors.UnknownColumnError) as error:
        try:  # the plain item_id,text layout
            items = table.load_items(path, table.ColumnMap(item=config.item_col, text=(TEXT,)), config.delimiter)
        except (errors.MissingColumnError, errors.UnknownColumnError):
            raise error from None  # neither layout: the error of the run's own columns
    if items.empty:
        raise errors.EmptyDataError("catalogue update file holds no items", file=path)
    known = set(catalogue.item_ids)
    for item_id in items[schema.ITEM_ID]:
        if item_id in known:
            raise errors.DuplicateIdError(
                f"item {item_id!r} is already in the catalogue; only new items can be added without retraining",
                file=path, field=config.item_col)
    new_ids = list(items[schema.ITEM_ID])
    vocab = Vocabulary(new_ids, [], [])
    return new_ids, texts.item_texts(items, vocab)[1:], texts.item_titles(items, vocab)[1:]


def read_jsonl(path):
    """The (ids, texts, titles) of an `items.jsonl` written by `Catalogue.write_jsonl`, in index order.

    Raises:
        ValueError: naming `path` and the line, for a line that is not a JSON object with `item_id` and `text`
            (e.g. a file cut off mid-line).
    """
    ids, item_texts, titles = [], [], []
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
                ids.append(record[ITEM_ID])
                item_texts.append(record[TEXT])
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}, line {number}: expected a JSON object with {ITEM_ID!r} and {TEXT!r} "
                                 f"(is the file truncated?): {e!r}") from None
            titles.append(record.get(TITLE) or texts.title_from_text(record[TEXT]))
    return ids, item_texts, titles
