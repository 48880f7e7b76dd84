"""The `tfrecord:` source: examples converted by `python -m tfrec.data convert`, streamed into training."""

import json
import subprocess
import sys
import types

import numpy as np
import pytest
from train_helpers import REPO_ROOT, subprocess_env

from tfrec import data_tool
from tfrec.config import ConfigError
from tfrec.data import FEATURES, DataConfig, SourceError, load, prepare, tfrecord
from tfrec.data.streamed import StreamedData
from tfrec.models import ModelConfig
from tfrec.training import Trainer, TrainConfig, run_dir

SOURCE = "synthetic:users=50,items=110,per_user=24,seed=3"
HISTORY = 12


def convert(output_dir, shuffle_seed=-1):
    """`python -m tfrec.data convert` of SOURCE; shuffle_seed -1: examples in (user, time) order."""
    config = DataConfig(source=SOURCE, history_length=HISTORY)
    data_tool.convert(config, types.SimpleNamespace(output_dir=str(output_dir), overwrite=False, num_shards=3,
                                                    chunk_size=100, shuffle_seed=shuffle_seed))
    return f"tfrecord:{output_dir}"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Examples in the in-memory order: with a shuffle buffer larger than the data, tf.data's seeded
    shuffle draws the same permutation of them, so both runs see the same batches."""
    return convert(tmp_path_factory.mktemp("streamed") / "records")


def fit(source):
    data = prepare(DataConfig(source=source, history_length=HISTORY))
    trainer = Trainer(TrainConfig(epochs=2, batch_size=32, verbose=0, eval_ks=(10, 50), seed=1))
    model = trainer.build_model(ModelConfig(encoder="tiny", embedding_dim=16, sequence_length=8), data)
    return data, model, trainer.fit(model, data)


def test_the_stream_holds_the_in_memory_examples_and_facts(converted):
    memory = prepare(DataConfig(source=SOURCE, history_length=HISTORY))
    streamed = prepare(DataConfig(source=converted, history_length=HISTORY))
    assert isinstance(streamed, StreamedData) and "train" not in streamed.examples
    assert streamed.vocab.item_ids == memory.vocab.item_ids and streamed.item_titles == memory.item_titles
    assert streamed.fingerprint == memory.fingerprint and streamed.rating_mean == memory.rating_mean
    for split in ("valid", "test"):
        for name, values in memory.examples[split].items():
            np.testing.assert_array_equal(streamed.examples[split][name], values)
        assert [p.tolist() for p in streamed.held_out_prior(split)] == [p.tolist() for p in memory.held_out_prior(split)]
    rows = list(streamed.training_examples().as_numpy_iterator())
    assert len(rows) == streamed.num_examples("train") == memory.num_examples("train")
    np.testing.assert_array_equal([r["history_item_ids"] for r in rows], memory.examples["train"]["history_item_ids"])
    assert streamed.config.to_dict() == memory.config.replace(source=converted).to_dict()
    summary = streamed.summary()
    assert {k: v for k, v in summary.items() if k != "streamed_from"} == memory.summary()


def test_training_from_the_stream_gives_the_in_memory_metrics(converted):
    _, memory_model, memory = fit(SOURCE)
    _, streamed_model, streamed = fit(converted)
    assert streamed.metrics["data_summary"]["training_windows"] == memory.metrics["data_summary"]["training_windows"]
    for name in ("HR@10", "NDCG@10", "HR@50", "MRR"):
        assert streamed.metrics[name] == pytest.approx(memory.metrics[name], abs=1e-6), name
    assert streamed.metrics["baselines"] == memory.metrics["baselines"]
    np.testing.assert_allclose(streamed_model.trained_items.numpy(), memory_model.trained_items.numpy())


def test_a_run_trained_from_the_stream_evaluates_and_exports_from_its_source(converted, tmp_path):
    directory = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "tfrec.train", f"--flagfile={REPO_ROOT / 'configs/synthetic_tiny.flags'}",
         f"--source={converted}", f"--history_length={HISTORY}", "--epochs=1", "--eval_ks=10,50", "--verbose=0",
         f"--run_dir={directory}"],
        cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads((directory / run_dir.METRICS).read_text())
    assert saved["data_summary"]["streamed_from"] == converted.partition(":")[2]
    again = run_dir.evaluate_run(str(directory))
    assert again["HR@10"] == pytest.approx(saved["HR@10"], abs=1e-6)


def test_the_stream_refuses_what_it_cannot_do(converted, tmp_path):
    with pytest.raises(ConfigError, match=r"history_length=7: the examples in .* were converted with history_length=12"):
        prepare(DataConfig(source=converted, history_length=7))
    with pytest.raises(ConfigError, match=r"split='temporal': .* converted with split='leave_last_out'"):
        prepare(DataConfig(source=converted, history_length=HISTORY, split="temporal"))
    with pytest.raises(ConfigError, match=r"split_seed=7: .* converted with split_seed=0"):
        prepare(DataConfig(source=converted, history_length=HISTORY, split_seed=7))
    with pytest.raises(SourceError, match="holds converted examples, not tables"):
        load(converted)
    with pytest.raises(SourceError, match="no metadata.json"):
        prepare(DataConfig(source=f"tfrecord:{tmp_path}", history_length=HISTORY))
    data = prepare(DataConfig(source=converted, history_length=HISTORY))
    with pytest.raises(ConfigError, match="behaviour_text=True .* needs examples in memory"):
        Trainer(TrainConfig(epochs=1, verbose=0, eval_ks=(10,))).fit(
            Trainer(TrainConfig()).build_model(ModelConfig(encoder="tiny", behaviour_text=True), data), data)


def test_a_conversion_without_row_features_is_refused_with_the_fix(converted, tmp_path):
    directory = converted.partition(":")[2]
    with pytest.raises(SourceError, match=r"has no feature\(s\) \['nope'\]: convert the data again"):
        tfrecord.read_tfrecords(directory, "train", features=["nope"])
    plain = tfrecord.read_tfrecords(directory, "train", features=list(FEATURES))
    model = Trainer(TrainConfig()).build_model(ModelConfig(encoder="tiny"), prepare(DataConfig(
        source=converted, history_length=HISTORY)))
    with pytest.raises(ConfigError, match=r"lack \['user_row', 'user_rows'\]: convert the data again"):
        model.train_examples(plain)


def test_the_default_conversion_writes_the_same_examples_in_a_random_order(converted, tmp_path):
    shuffled = prepare(DataConfig(source=convert(tmp_path / "shuffled", shuffle_seed=0), history_length=HISTORY))
    ordered = prepare(DataConfig(source=converted, history_length=HISTORY))
    key = lambda rows: sorted((int(r["user_index"]), int(r["target_timestamp"]), int(r["target_item_id"]),  # noqa: E731
                               int(r["user_row"])) for r in rows)
    shuffled_rows = list(shuffled.training_examples().as_numpy_iterator())
    assert key(shuffled_rows) == key(ordered.training_examples().as_numpy_iterator())
    first_users = [int(r["user_index"]) for r in shuffled_rows[:50]]
    assert len(set(first_users)) > 25  # the first stretch of the files mixes users
    assert shuffled.metadata["train_order"] == "shuffled, seed 0" and ordered.metadata["train_order"] == "user"
