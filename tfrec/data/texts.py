"""The text of each catalogue item, as the text encoder reads it.

Example:

>>> import pandas as pd
>>> from tfrec.data.vocabulary import Vocabulary
>>> items = pd.DataFrame({"item_id": ["1"], "title": ["Heat (1995)"], "description": ["A heist film."],
...                       "genres": ["Action|Crime"]})
>>> item_texts(items, Vocabulary(["1"], [], []))
['', 'Heat (1995). Action, Crime. A heist film.']
"""

from tfrec.data import schema


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
    chosen = [column for column in items.columns if column.startswith(schema.TEXT_COLUMN_PREFIX)]
    if chosen:
        texts = {row[0]: ". ".join(part for part in row[1:] if part)
                 for row in items[[schema.ITEM_ID, *chosen]].itertuples(index=False)}
    else:
        texts = {
            row.item_id: item_text(row.title, row.genres, row.description)
            for row in items[[schema.ITEM_ID, *schema.TEXT_FIELDS]].itertuples(index=False)
        }
    return [""] + [texts.get(item_id, "") for item_id in vocab.item_ids[1:]]


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
    return [""] + [titles.get(item_id) or title_from_text(text)
                   for item_id, text in zip(vocab.item_ids[1:], item_texts(items, vocab)[1:])]
