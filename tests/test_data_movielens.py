"""Integration: the real MovieLens-100K files in ../shared/data/ml-100k (or $TFREC_DATA_DIR)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from tfrec import data
from tfrec.data import schema

ROOT = pathlib.Path(__file__).resolve().parents[1]
ML_100K = pathlib.Path(os.environ.get("TFREC_DATA_DIR") or ROOT.parent / "shared" / "data" / "ml-100k")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (ML_100K / "u.data").is_file(), reason=f"MovieLens-100K not found at {ML_100K}"),
]


@pytest.fixture(scope="module")
def ds():
    return data.load(f"movielens:{ML_100K}")


def test_counts_and_tables(ds):
    assert (len(ds.interactions), len(ds.items), ds.interactions.user_id.nunique()) == (100000, 1682, 943)
    assert ds.skipped == {}
    toy_story = ds.items.iloc[0]
    assert (toy_story.item_id, toy_story.title, toy_story.genres) == ("1", "Toy Story (1995)", "Animation|Children's|Comedy")
    assert toy_story.description.startswith("Toy Story is")
    assert (ds.items.description != "").sum() >= 1524
    assert ds.users.columns.tolist() == ["user_id", "age", "gender", "occupation", "zip_code"] and len(ds.users) == 943
    # Accented titles decode (and, where the copy lost its accents, are restored from the wiki file).
    les_miserables = ds.items.set_index("item_id").loc["543"]
    assert les_miserables.title == "Misérables, Les (1995)"
    assert les_miserables.description.startswith("Les Misérables is a 1995 French war film")
    first = ds.interactions.iloc[:3]
    assert first[schema.USER_ID].tolist() == ["1", "1", "1"]
    assert first[schema.TIMESTAMP].is_monotonic_increasing


def test_leave_last_out_sizes_and_examples(ds):
    sp = data.split_interactions(ds, "leave_last_out")
    assert sp.sizes() == {"train": 98114, "valid": 943, "test": 943}
    vocab = data.Vocabulary.from_data(ds)
    examples = data.build_examples(ds, sp, vocab, history_length=50)
    assert examples["train"][schema.HISTORY_ITEM_IDS].shape == (98114, 50)
    assert examples["test"][schema.HISTORY_LENGTH].min() == 19  # every user has >= 20 ratings


def test_describe_cli_reports_the_protocol_sizes():
    result = subprocess.run(
        [sys.executable, "-m", "tfrec.data", "describe", f"--source=movielens:{ML_100K}", "--split=leave_last_out",
         "--format=json"],
        capture_output=True, text=True, cwd=ROOT, check=True,
    )  # fmt: skip
    stats = json.loads(result.stdout)
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100000)
    assert stats["splits"] == {"train": 98114, "valid": 943, "test": 943}
    assert 0.9 < stats["text_coverage"] < 0.92
