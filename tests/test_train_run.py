"""In-process training runs on the tiny synthetic config: run-directory files,
TensorBoard scalars and projector, best-weights restoration, flag checks."""

import json
import re

import numpy as np
import pytest
import tensorflow as tf
from train_helpers import (  # noqa: F401 (default_flags_after_test: autouse fixture)
    SHARED_RUN_EPOCHS,
    default_flags_after_test,
    parse_flags,
    read_jsonl,
    scalar_tags,
    shared_run,
)

from tfrec import train
from tfrec.training import checks, run_dir

EPOCHS = SHARED_RUN_EPOCHS


@pytest.fixture
def trained():
    return shared_run()


def test_run_directory_holds_every_file(trained):
    directory, metrics = trained
    for name in (run_dir.CONFIG, run_dir.METRICS, run_dir.VOCABULARY, run_dir.ITEMS, run_dir.WEIGHTS):
        assert (directory / name).is_file(), name
    assert json.loads((directory / run_dir.METRICS).read_text()) == metrics
    for key in ("HR@10", "NDCG@10", "Recall@100", "MRR"):
        assert 0.0 <= metrics[key] <= 1.0
        assert key in metrics["valid"]
    assert metrics["examples_per_second"] > 0 and metrics["wall_time_seconds"] > 0
    assert metrics["epochs"] == EPOCHS
    config = json.loads((directory / run_dir.CONFIG).read_text())
    assert config["flags"]["epochs"] == EPOCHS and config["flags"]["source"].startswith("synthetic:")
    assert config["model_config"]["encoder"] == "tiny" and config["num_replicas"] == 1
    items = read_jsonl(directory / run_dir.ITEMS)
    assert [item["index"] for item in items] == list(range(1, len(items) + 1))
    assert all(item["text"] for item in items)
    assert not list(directory.glob("**/*.tmp*")) and not list(directory.glob("**/.*.json*"))


def test_best_epoch_weights_are_restored(trained):
    directory, metrics = trained
    epochs = [r for r in read_jsonl(directory / run_dir.TRAINING_LOG) if r["event"] == "epoch"]
    assert [r["epoch"] for r in epochs] == list(range(1, EPOCHS + 1))
    best = max(r["val_HR@10"] for r in epochs)
    assert metrics["valid"]["HR@10"] == pytest.approx(best, abs=1e-6)
    assert json.loads((directory / "checkpoints" / "best.json").read_text())["best"] == pytest.approx(best)


def test_tensorboard_has_loss_metrics_learning_rate(trained):
    directory, _ = trained
    train_scalars = scalar_tags(directory / "tensorboard" / "train")
    for tag in ("epoch_loss", "epoch_learning_rate", "epoch_examples_per_second"):
        assert len(train_scalars[tag]) == EPOCHS, tag
        assert all(np.isfinite(train_scalars[tag]))
    assert train_scalars["batch_loss"]  # every --log_every_steps steps
    learning_rates = train_scalars["epoch_learning_rate"]
    assert learning_rates[-1] < learning_rates[0]  # cosine decay
    validation = scalar_tags(directory / "tensorboard" / "validation")
    assert len(validation["epoch_HR@10"]) == EPOCHS and len(validation["epoch_MRR"]) == EPOCHS


def test_projector_holds_item_embeddings_with_titles(trained):
    directory, _ = trained
    log_dir = directory / "tensorboard"
    config = (log_dir / "projector_config.pbtxt").read_text()
    assert 'metadata_path: "metadata.tsv"' in config
    rows = (log_dir / "metadata.tsv").read_text().splitlines()
    num_items = len(read_jsonl(directory / run_dir.ITEMS))
    assert rows[0] == "item_id\ttitle" and len(rows) == num_items + 1
    assert all(len(row.split("\t")) == 2 and row.split("\t")[1] for row in rows[1:])
    reader = tf.train.load_checkpoint(str(log_dir))
    tensor = config.split('tensor_name: "')[1].split('"')[0]
    assert reader.get_variable_to_shape_map()[tensor] == [num_items, 32]


def test_rerun_of_a_finished_run_trains_no_more(trained):
    directory, metrics = trained
    again = train.train(parse_flags(f"--run_dir={directory}", f"--epochs={EPOCHS}"))
    assert again["HR@10"] == pytest.approx(metrics["HR@10"])
    starts = [r for r in read_jsonl(directory / run_dir.TRAINING_LOG) if r["event"] == "start"]
    assert len(starts) == 1  # the rerun resumed after the last epoch: no epoch started


def test_early_stopping_stops_and_is_not_undone_by_a_rerun(tmp_path):
    # With a vanishing learning rate the validation metric cannot improve after epoch 1.
    args = (f"--run_dir={tmp_path}", "--epochs=4", "--early_stopping_patience=1", "--learning_rate=1e-12")
    metrics = train.train(parse_flags(*args))
    epochs = [r["epoch"] for r in read_jsonl(tmp_path / run_dir.TRAINING_LOG) if r["event"] == "epoch"]
    assert epochs == [1, 2] and metrics["epochs"] == 2
    state = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert state["stopped"] and state["epoch"] == 1 and state["wait"] == 1
    train.train(parse_flags(*args))
    assert [r["event"] for r in read_jsonl(tmp_path / run_dir.TRAINING_LOG)].count("start") == 1


def test_rerun_with_another_model_is_refused(trained):
    directory, _ = trained
    with pytest.raises(checks.ConfigError, match="embedding_dim=32.*embedding_dim=16"):
        train.train(parse_flags(f"--run_dir={directory}", "--embedding_dim=16"))


@pytest.mark.parametrize(
    "task, target, expected, monitor",
    [("ranking", "rating", {"RMSE", "MAE"}, "val_RMSE"),
     ("multitask", "click", {"HR@10", "NDCG@10", "Recall@100", "MRR", "AUC", "LogLoss"}, "val_HR@10")],
)
def test_ranking_and_multitask_runs_report_their_metrics(tmp_path, task, target, expected, monitor):
    metrics = train.train(parse_flags(f"--run_dir={tmp_path}", f"--task={task}", f"--ranking_target={target}",
                                      "--epochs=1", "--max_steps=2"))
    assert set(metrics) - {"valid", "examples_per_second", "wall_time_seconds", "epochs"} >= expected
    assert set(metrics["valid"]) >= expected
    if "AUC" in expected:
        assert 0.0 <= metrics["AUC"] <= 1.0 and metrics["LogLoss"] > 0
    else:
        assert 0.0 < metrics["RMSE"] < 5.0
    state = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert state["best"] == pytest.approx(metrics["valid"][monitor.removeprefix("val_")])


def _no_ratings_source(tmp_path):
    interactions = tmp_path / "logs.csv"
    interactions.write_text("user_id,item_id,timestamp\n" + "".join(
        f"u{u},i{(u * 7 + t) % 30},{1000 + t}\n" for u in range(10) for t in range(8)))
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n" + "".join(f"i{i},Item number {i}\n" for i in range(30)))
    return f"--source=table:interactions={interactions},items={items}"


@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param(["--source=nosuch:abc"], "KIND", id="unknown_source"),
        pytest.param(["--source=movielens:/no/such/dir"], "/no/such/dir", id="missing_directory"),
        pytest.param(["--task=ranking", "NO_RATINGS"], "needs ratings", id="ranking_without_ratings"),
        pytest.param(["--eval_ks=10,500"], "K=500 is larger than the catalogue", id="k_above_catalogue"),
        pytest.param(["--encoder_trainable=top:x"], "--encoder_trainable='top:x'", id="trainable_syntax"),
        pytest.param(["--encoder_trainable=top:9"], "top:9", id="trainable_above_layers"),
        pytest.param(["--monitor=val_RMSE"], "--monitor='val_RMSE': expected one of", id="unknown_monitor"),
        pytest.param(["--warmup_steps=5", "--warmup_fraction=0.1"], "not both", id="two_warmups"),
        pytest.param(["--task=nosuch"], "task='nosuch'", id="unknown_task"),
    ],
)
def test_invalid_flags_fail_before_training(tmp_path, args, message):
    args = [_no_ratings_source(tmp_path) if arg == "NO_RATINGS" else arg for arg in args]
    directory = tmp_path / "run"
    with pytest.raises(checks.ConfigError, match=re.escape(message)):
        train.train(parse_flags(f"--run_dir={directory}", *args))
    assert not (directory / run_dir.TRAINING_LOG).exists()
    assert not (directory / "checkpoints").exists()


def test_batch_size_must_split_over_replicas():
    with pytest.raises(checks.ConfigError, match="--batch_size=33 .* divisible by the 2 replicas"):
        checks.check_batch_split(33, 2)
    checks.check_batch_split(32, 2)
