"""`python -m tfrec.export` on a real run directory written by `tfrec.train`."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfrec import export
from tfrec.data import errors, schema
from tfrec.models import run as run_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The training engineer's tiny config, made smaller still: the test needs a
# trained run directory, not a good model.
TRAIN_ARGS = ["--flagfile=configs/synthetic_tiny.flags", "--epochs=1",
              "--source=synthetic:users=30,items=50,per_user=12,seed=0", "--eval_ks=10"]


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


@pytest.fixture(scope="module")
def first_export(run_dir, tmp_path_factory):
    return export.export_run(run_dir, str(tmp_path_factory.mktemp("exports")), "movies")


def test_cli_exports_new_versions_with_an_updated_catalogue(run_dir, first_export, tmp_path):
    base = os.path.dirname(os.path.dirname(first_export.path))
    update = tmp_path / "new.jsonl"
    update.write_text('{"item_id": "new-1", "text": "a film about robots in space"}\n')

    process = _run_module("tfrec.export", f"--run_dir={run_dir}", f"--export_base={base}",
                          "--model_name=movies", "--version=5", f"--update_catalog={update}")

    assert process.returncode == 0, process.stderr[-3000:]
    assert "exported" in process.stdout and "TensorFlow Text op types: " in process.stdout
    assert "state ratio" in process.stdout
    assert sorted(os.listdir(os.path.join(base, "movies"))) == ["1", "5"]
    second = export.load(os.path.join(base, "movies", "5"))
    out = second.signatures["recommend"](history=tf.constant([["new-1"]]), k=tf.constant(first_export.num_items))
    assert "new-1" not in out["item_ids"].numpy()[0].astype(str)
    embedded = second.signatures["embed_items"](text=tf.constant(["a film about robots in space"]))
    top = second.signatures["recommend_from_text"](text=tf.constant(["a film about robots in space"]),
                                                    k=tf.constant(1))
    assert top["item_ids"].numpy()[0, 0] == b"new-1"
    np.testing.assert_allclose(top["scores"].numpy()[0, 0],
                               np.sum(embedded["embeddings"].numpy() ** 2), atol=1e-5)


def test_export_of_a_run_recommends_like_the_loaded_model(run_dir, first_export):
    loaded = export.load(first_export.path)
    run = run_lib.load_run(run_dir)
    run.model.refresh_catalogue()
    ids = run.vocab.item_ids
    history = np.array([[0, 4, 9, 2], [0, 0, 0, 7]], np.int32)
    batch, length = history.shape
    features = {name: np.zeros([batch, length] if name.startswith("history") else [batch], dtype)
                for name, dtype in [(schema.USER_INDEX, np.int32), (schema.HISTORY_RATINGS, np.float32),
                                    (schema.HISTORY_EVENTS, np.int32), (schema.HISTORY_TIMESTAMPS, np.int64),
                                    (schema.TARGET_ITEM_ID, np.int32), (schema.TARGET_RATING, np.float32),
                                    (schema.TARGET_TIMESTAMP, np.int64)]}
    features[schema.HISTORY_ITEM_IDS] = history
    scores, indices = run.model.recommend(features, k=10)
    out = loaded.signatures["serving_default"](
        history=tf.constant([[ids[i] for i in row] for row in history]), k=tf.constant(10))
    assert out["item_ids"].numpy().astype(str).tolist() == [[ids[i] for i in row] for row in indices.numpy()]
    np.testing.assert_allclose(out["scores"].numpy(), scores.numpy(), atol=1e-5)


def test_bad_update_file_fails_before_writing_anything(run_dir, tmp_path):
    update = tmp_path / "new.csv"
    update.write_text("item_id,text\nnew-1,robots\nnew-1,again\n")
    with pytest.raises(errors.DuplicateIdError, match=r"new.csv, row 3, field 'item_id'"):
        export.export_run(run_dir, str(tmp_path / "exports"), "movies", update_catalog=str(update))
    assert not os.path.exists(tmp_path / "exports")
