"""`python -m tfrec.export` (and `tfrec.export.run(values)`, `tfrec.exporting.exporter`)
on a real run directory written by `python -m tfrec.train`."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from tfrec import export
from tfrec.data import errors
from tfrec.exporting import exporter, layout
from tfrec.training import load_run

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The training engineer's tiny config, made smaller still: the test needs a
# trained run directory, not a good model.
TRAIN_ARGS = ["--flagfile=configs/synthetic_tiny.flags", "--epochs=1",
              "--source=synthetic:users=30,items=50,per_user=12,seed=0", "--eval_ks=10"]

ALLOWED = exporter.ExportOptions(allow_below_baseline=True)
"""Tiny test runs trail item-kNN on the synthetic data: the gate itself is tested in test_prior_in_model."""


def _run_module(module, *args):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("run"))
    process = _run_module("tfrec.train", *TRAIN_ARGS, f"--run_dir={directory}")
    assert process.returncode == 0, process.stderr[-3000:]
    return directory


def export_flags(*args):
    """A fresh `FlagValues` with the flags of `python -m tfrec.export`, parsed from `args`."""
    values = flags.FlagValues()
    export.define_flags(values)
    values(["tfrec.export", *args, "--allow_below_baseline"])  # tiny test runs trail item-kNN: see test_prior_in_model
    return values


@pytest.fixture(scope="module")
def first_export(run_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("exports")
    return export.run(export_flags(f"--run_dir={run_dir}", f"--export_base={base}", "--model_name=movies"))


def test_export_flags_require_run_dir_and_model_name():
    with pytest.raises(flags.IllegalFlagValueError, match="model_name"):
        export_flags("--run_dir=somewhere")


def test_cli_exports_new_versions_with_an_updated_catalogue(run_dir, first_export, tmp_path):
    base = os.path.dirname(os.path.dirname(first_export.path))
    update = tmp_path / "new.jsonl"
    update.write_text('{"item_id": "new-1", "text": "a film about robots in space"}\n')

    process = _run_module("tfrec.export", f"--run_dir={run_dir}", f"--export_base={base}",
                          "--model_name=movies", "--version=5", f"--update_catalog={update}", "--allow_below_baseline")

    assert process.returncode == 0, process.stderr[-3000:]
    assert "exported" in process.stdout and "TensorFlow Text op types: " in process.stdout
    assert "state ratio" in process.stdout
    assert sorted(os.listdir(os.path.join(base, "movies"))) == ["1", "5"]
    assert first_export.version == 1 and first_export.path == os.path.join(base, "movies", "1")
    second = exporter.load(os.path.join(base, "movies", "5"))
    out = second.signatures["recommend"](history=tf.constant([["new-1"]]), k=tf.constant([first_export.num_items]))
    assert "new-1" not in out["item_ids"].numpy()[0].astype(str)
    embedded = second.signatures["embed_items"](text=tf.constant(["a film about robots in space"]))
    top = second.signatures["recommend_from_text"](text=tf.constant(["a film about robots in space"]),
                                                    k=tf.constant([1]))
    assert top["item_ids"].numpy()[0, 0] == b"new-1"
    np.testing.assert_allclose(top["scores"].numpy()[0, 0],
                               np.sum(embedded["embeddings"].numpy() ** 2), atol=1e-5)


def test_export_of_a_run_recommends_like_the_loaded_model(run_dir, first_export):
    loaded = exporter.load(first_export.path)
    run = load_run(run_dir)
    ids = run.vocab.item_ids
    histories = [[ids[4], ids[9], ids[2]], [ids[7]]]
    item_ids, scores = run.model.recommend(histories, k=10)
    assert item_ids.shape == scores.shape == (2, 10)
    assert not set(item_ids[0]) & set(histories[0]) and ids[7] not in item_ids[1]  # the history is excluded
    padded = [[""] * (3 - len(history)) + history for history in histories]
    out = loaded.signatures["serving_default"](history=tf.constant(padded), k=tf.constant([10] * 2))
    assert out["item_ids"].numpy().astype(str).tolist() == item_ids.tolist()
    np.testing.assert_allclose(out["scores"].numpy(), scores, atol=1e-5)


def test_catalogue_dtype_flag_exports_a_bfloat16_catalogue_answering_like_float32(run_dir, first_export, tmp_path):
    with pytest.raises(flags.IllegalFlagValueError, match="catalogue_dtype"):
        export_flags(f"--run_dir={run_dir}", "--model_name=m", "--catalogue_dtype=float16")
    small = export.run(export_flags(f"--run_dir={run_dir}", f"--export_base={tmp_path}", "--model_name=small",
                                    "--catalogue_dtype=bfloat16"))
    assert small.size.catalogue_matrix_bytes == first_export.size.catalogue_matrix_bytes // 2
    with open(os.path.join(small.path, "assets", "export_info.json")) as f:
        assert json.load(f)["catalogue_dtype"] == "bfloat16"
    ids = load_run(run_dir).vocab.item_ids
    history = tf.constant([[ids[4], ids[9], ids[2]]])
    answers = [exporter.load(path).signatures["serving_default"](history=history, k=tf.constant([10]))
               for path in (first_export.path, small.path)]
    full, half = (set(out["item_ids"].numpy()[0]) for out in answers)
    assert len(full & half) >= 8
    np.testing.assert_allclose(answers[1]["scores"].numpy(), answers[0]["scores"].numpy(), atol=0.02)


def test_bad_update_file_fails_before_writing_anything(run_dir, tmp_path):
    update = tmp_path / "new.csv"
    update.write_text("item_id,text\nnew-1,robots\nnew-1,again\n")
    with pytest.raises(errors.DuplicateIdError, match=r"new.csv, row 3, field 'item_id'"):
        exporter.export_run(run_dir, str(tmp_path / "exports"), "movies",
                            exporter.ExportOptions(update_catalog=str(update), allow_below_baseline=True))
    assert not os.path.exists(tmp_path / "exports")


def _update(path, first, count):
    """`ExportOptions` adding the items n{first}... of the update file it writes at `path`."""
    path.write_text("item_id,title,genres\n" + "".join(f"n{first + i},Robots in space part {first + i},Sci-Fi\n"
                                                      for i in range(count)))
    return ALLOWED.replace(update_catalog=str(path))


def _served_ids(export):
    with open(os.path.join(export.path, "assets", "item_ids.txt")) as f:
        return f.read().split()


def test_catalogue_updates_accumulate_across_versions(run_dir, tmp_path):
    """An update of 3 items after an update of 3 serves all 6; a plain re-export keeps them too."""
    base = str(tmp_path / "exports")
    plain = exporter.export_run(run_dir, base, "movies", ALLOWED)
    first = exporter.export_run(run_dir, base, "movies", _update(tmp_path / "a.csv", 1, 3))
    second = exporter.export_run(run_dir, base, "movies", _update(tmp_path / "b.csv", 4, 3))
    again = exporter.export_run(run_dir, base, "movies", ALLOWED)
    new = [f"n{i}" for i in range(1, 7)]
    assert first.num_new_items == 3 and second.num_new_items == again.num_new_items == 6
    assert _served_ids(second) == _served_ids(plain) + new == _served_ids(again)
    loaded = exporter.load(second.path)
    out = loaded.signatures["recommend"](history=tf.constant([["n1", "n5"]]), k=tf.constant([second.num_items - 2]))
    assert {"n2", "n3", "n4", "n6"} <= set(out["item_ids"].numpy()[0].astype(str))
    with open(os.path.join(second.path, "assets", "items.jsonl")) as f:
        texts = {r["item_id"]: r["text"] for r in map(json.loads, f)}
    assert texts["n5"] == "Robots in space part 5. Sci-Fi"  # the table source's text template


def test_an_update_naming_an_item_of_an_earlier_update_is_refused(run_dir, tmp_path):
    base = str(tmp_path / "exports")
    exporter.export_run(run_dir, base, "movies", _update(tmp_path / "a.csv", 1, 3))
    with pytest.raises(errors.DuplicateIdError, match=r"b.csv, field 'item_id': item 'n3' is already in the catalogue"):
        exporter.export_run(run_dir, base, "movies", _update(tmp_path / "b.csv", 3, 2))
    assert layout.existing_versions(os.path.join(base, "movies")) == [1]


def test_every_export_of_a_run_carries_a_model_card_with_metrics_and_baselines(run_dir, first_export):
    assets = os.path.join(first_export.path, "assets")
    with open(os.path.join(assets, "model_card.json")) as f:
        card = json.load(f)
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    assert card["metrics"]["test"]["HR@10"] == metrics["HR@10"]
    assert set(card["baselines"]) == {"popularity", "transitions", "item-kNN"}
    assert card["verdict"].startswith(("Above every baseline on validation", "Below a baseline on validation"))
    assert 0 <= card["baselines"]["transitions"]["HR@10"] <= 1
    assert card["baselines"] == {name: {k: v for k, v in figures.items() if k in card["baselines"][name]}
                                 for name, figures in metrics["baselines"].items()}
    assert card["data"]["summary"]["users"] == 30 and card["training"]["trained_at"] == metrics["trained_at"]
    assert card["config"]["model_config"]["task"] == "retrieval" and card["intended_use"] and card["limits"]
    with open(os.path.join(assets, "model_card.md")) as f:
        markdown = f.read()
    assert f"| this model | HR@10 {metrics['HR@10']:.4f}" in markdown
    assert "| transitions (same test targets) | HR@10 " in markdown and "## Limits" in markdown
