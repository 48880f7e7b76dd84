"""Item text from chosen columns (`DataConfig.text_cols`), and items with any text accepted."""

import pandas as pd
import pytest

import tfrec
from tfrec.data import errors, summary, texts

LOGS = pd.DataFrame({"user_id": ["u1"] * 3 + ["u2"] * 3, "item_id": ["a", "b", "c", "b", "c", "a"],
                     "timestamp": [1, 2, 3, 1, 2, 3]})
ITEMS = pd.DataFrame({"item_id": ["a", "b", "c"],
                      "title": ["Stapler", "Pen", ""],
                      "brand": ["Swingline", "", "Bic"],
                      "categories": ["Office, Staplers", "Office, Pens", "Office, Pens"],
                      "description": ["", "Blue ink.", ""]})


def test_text_cols_join_the_chosen_columns_in_order():
    data = tfrec.data.from_dataframes(LOGS, ITEMS, text_cols=("title", "brand", "categories", "description"))
    index = {item: i for i, item in enumerate(data.vocab.item_ids)}
    assert data.item_texts[index["a"]] == "Stapler. Swingline. Office, Staplers"
    assert data.item_texts[index["b"]] == "Pen. Office, Pens. Blue ink."
    # An item with only a brand and categories is accepted; its title falls back to its text.
    assert data.item_texts[index["c"]] == "Bic. Office, Pens"
    assert data.item_titles[index["a"]] == "Stapler" and data.item_titles[index["c"]] == "Bic"


def test_without_text_cols_an_item_without_title_or_description_is_refused():
    with pytest.raises(errors.EmptyTextError, match="row 3"):
        tfrec.data.from_dataframes(LOGS, ITEMS)


def test_an_unknown_text_column_is_named():
    with pytest.raises(errors.UnknownColumnError,
                       match=r"'colour' \(DataConfig.text_cols=colour\) is not there; the DataFrame has"):
        tfrec.data.from_dataframes(LOGS, ITEMS, text_cols=("title", "colour"))


def test_an_item_with_no_text_in_any_chosen_column_is_refused():
    items = ITEMS.assign(brand=["Swingline", "", ""], categories=["x", "y", ""])
    with pytest.raises(errors.EmptyTextError, match="a non-empty title or brand or categories"):
        tfrec.data.from_dataframes(LOGS, items, text_cols=("title", "brand", "categories"))


def test_text_cols_reach_the_table_source(tmp_path):
    ITEMS.to_csv(tmp_path / "items.csv", index=False)
    LOGS.to_csv(tmp_path / "logs.csv", index=False)
    config = tfrec.data.DataConfig(source=f"table:interactions={tmp_path / 'logs.csv'},items={tmp_path / 'items.csv'}",
                                   text_cols=("brand", "title"))
    data = tfrec.data.prepare(config)
    assert data.item_texts[data.vocab.item_ids.index("a")] == "Swingline. Stapler"


def test_overlong_titles_and_texts_are_cut_at_load_and_counted():
    items = ITEMS.assign(title=["S" * 5_000_000, "Pen", "Cap"], description=["", "ink " * 10_000, ""])
    data = tfrec.data.from_dataframes(LOGS, items)
    index = {item: i for i, item in enumerate(data.vocab.item_ids)}
    assert len(data.item_titles[index["a"]]) == texts.MAX_TITLE_CHARS
    assert len(data.item_texts[index["a"]]) == len(data.item_texts[index["b"]]) == texts.MAX_TEXT_CHARS
    assert data.item_titles[index["b"]] == "Pen" and data.item_texts[index["c"]] == "Cap"
    assert texts.cut_counts(data.tables.items) == {"texts": 2, "titles": 1}
    stats = summary.describe(data.tables, data.split)
    assert stats["cut_texts"] == {"texts": 2, "titles": 1}
    assert "2 item texts at 20,000 characters, 1 titles at 1,000" in summary.format_text(stats)
