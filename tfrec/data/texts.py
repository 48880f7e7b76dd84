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

    Args:
        items: catalogue DataFrame (`item_id`, `title`, `description`, `genres`).
        vocab: `Vocabulary`.

    Returns:
        list of str, length `vocab.num_items + 1`; entry 0 (padding) and items
        missing from `items` are "".
    """
    texts = {
        row.item_id: item_text(row.title, row.genres, row.description)
        for row in items[[schema.ITEM_ID, *schema.TEXT_FIELDS]].itertuples(index=False)
    }
    return [""] + [texts.get(item_id, "") for item_id in vocab.item_ids[1:]]
