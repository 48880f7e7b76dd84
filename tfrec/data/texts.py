"""The text of each catalogue item, as the text encoder reads it, and its title.

Both are bounded at load: a text longer than `MAX_TEXT_CHARS` characters (the
encoder reads a few hundred tokens of it at most) or a title longer than
`MAX_TITLE_CHARS` (every answer holding the item carries it) is cut there,
with a warning naming the first such item; `summary.describe` counts them.

Example:

>>> import pandas as pd
>>> from tfrec.data.vocabulary import Vocabulary
>>> items = pd.DataFrame({"item_id": ["1"], "title": ["Heat (1995)"], "description": ["A heist film."],
...                       "genres": ["Action|Crime"]})
>>> item_texts(items, Vocabulary(["1"], [], []))
['', 'Heat (1995). Action, Crime. A heist film.']
"""

from absl import logging

from tfrec.data import schema

MAX_TEXT_CHARS = 20_000
MAX_TITLE_CHARS = 1_000


def item_text(title, genres, description):
    """Returns "<title>. <genres joined by ', '>. <description>", empty parts omitted."""
    parts = [title.strip(), ", ".join(g for g in genres.split("|") if g), description.strip()]
    return ". ".join(p for p in parts if p)


def item_texts(items, vocab):
    """Texts of all catalogue items in vocabulary index order.

    The text joins the catalogue's chosen text columns (`text.<column>`, in
    their order, empty ones left out) with ". ", or, without chosen columns,
    is `item_text(title, genres, description)`.

    Args:
        items: catalogue DataFrame (`item_id`, `title`, `description`, `genres`,
            and any `text.<column>`).
        vocab: `Vocabulary`.

    Returns:
        list of str, length `vocab.num_items + 1`; entry 0 (padding) and items
        missing from `items` are "".
    """
    texts = _texts_by_id(items)
    return [""] + _cut([texts.get(item_id, "") for item_id in vocab.item_ids[1:]], vocab.item_ids[1:],
                       MAX_TEXT_CHARS, "text")


def _texts_by_id(items):
    """item id -> its whole text (before any cut)."""
    chosen = [column for column in items.columns if column.startswith(schema.TEXT_COLUMN_PREFIX)]
    if chosen:
        return {row[0]: ". ".join(part for part in row[1:] if part)
                for row in items[[schema.ITEM_ID, *chosen]].itertuples(index=False)}
    return {
        row.item_id: item_text(row.title, row.genres, row.description)
        for row in items[[schema.ITEM_ID, *schema.TEXT_FIELDS]].itertuples(index=False)
    }


def _cut(values, item_ids, limit, what):
    """`values` with each longer than `limit` characters cut to `limit`; warns naming the first such item."""
    long = [item_id for item_id, value in zip(item_ids, values) if len(value) > limit]
    if long:
        logging.warning("%d item %ss are longer than %d characters and were cut there (first: item %r)",
                        len(long), what, limit, long[0])
    return [value[:limit] for value in values]


def cut_counts(items) -> dict:
    """How many item texts and titles of the catalogue `items` load cuts: {"texts": n, "titles": n}.

    >>> import pandas as pd
    >>> cut_counts(pd.DataFrame({"item_id": ["1"], "title": ["t" * 2000], "description": [""], "genres": [""]}))
    {'texts': 0, 'titles': 1}
    """
    return {"texts": sum(len(text) > MAX_TEXT_CHARS for text in _texts_by_id(items).values()),
            "titles": int((items[schema.TITLE].str.strip().str.len() > MAX_TITLE_CHARS).sum())}


def title_from_text(text):
    """The title of an item without one: the first sentence of its text.

    >>> title_from_text("Heat (1995). Action, Crime. A heist film.")
    'Heat (1995)'
    """
    return text.split(". ")[0]


def item_titles(items, vocab):
    """Titles of all catalogue items in vocabulary index order, `[0] == ""`
    (an item without a title: the first sentence of its text)."""
    titles = dict(zip(items[schema.ITEM_ID], items[schema.TITLE].str.strip()))
    chosen = [titles.get(item_id) or title_from_text(text)
              for item_id, text in zip(vocab.item_ids[1:], item_texts(items, vocab)[1:])]
    return [""] + _cut(chosen, vocab.item_ids[1:], MAX_TITLE_CHARS, "title")
