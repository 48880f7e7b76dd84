"""Training runs on the tiny synthetic config, through the Python API
(`Trainer.fit`) and the command line (`tfrec.train.train(values)`, `python -m
tfrec.train`): run-directory files, TensorBoard scalars and projector,
best-weights restoration, config checks, what the command prints."""

import dataclasses
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from absl import flags
from train_helpers import (REPO_ROOT, SHARED_RUN_EPOCHS, TINY_FLAGS, read_jsonl, scalar_tags, shared_fit, shared_run,
                           train_flags)

from tfrec import config_flags, train
from tfrec.config import ConfigError
from tfrec.data import DataError, prepare, schema
from tfrec.training import Trainer, TrainResult, auto_settings, checks, evaluate_run, load_run, run_dir
from tfrec.training.trainer import RUN_FACTS

EPOCHS = SHARED_RUN_EPOCHS
HELD_OUT_ONLY = set(RUN_FACTS)


def network_valid(metrics, name):
    """The validation figure `name` of the network alone (the prior's weight 0 in its calibration table):
    what the epochs monitored."""
    prior = metrics.get("transition_prior")
    return prior["valid"][prior["form"]]["0.0"][name] if prior else metrics["valid"][name]


@pytest.fixture
def trained():
    return shared_run()


def tiny_configs(*args):
    """The (DataConfig, ModelConfig, TrainConfig) of the tiny flagfile plus `args`."""
    return train.configs_from_flags(train_flags("--run_dir=unused", *args))


def test_run_directory_holds_every_file(trained):
    directory, metrics = trained
    for name in (run_dir.CONFIG, run_dir.METRICS, run_dir.VOCABULARY, run_dir.DATA_STATISTICS, run_dir.ITEMS,
                 run_dir.WEIGHTS):
        assert (directory / name).is_file(), name
    assert json.loads((directory / run_dir.METRICS).read_text()) == metrics
    for key in ("HR@10", "NDCG@10", "Recall@100", "MRR"):
        assert 0.0 <= metrics[key] <= 1.0
        assert key in metrics["valid"]
    assert metrics["examples_per_second"] > 0 and metrics["wall_time_seconds"] > 0
    assert metrics["epochs"] == EPOCHS
    config = json.loads((directory / run_dir.CONFIG).read_text())
    assert set(config) == {"data_config", "model_config", "train_config", "num_replicas", "data_name",
                           "data_fingerprint", "warm_start_from"}
    assert config["warm_start_from"] is None
    assert config["train_config"]["epochs"] == EPOCHS and config["data_config"]["source"].startswith("synthetic:")
    assert config["data_name"].startswith("synthetic:users=60,items=120")
    assert config["model_config"]["encoder"] == "tiny" and config["num_replicas"] == 1
    items = read_jsonl(directory / run_dir.ITEMS)
    assert [item["index"] for item in items] == list(range(1, len(items) + 1))
    assert all(item["text"] and item["title"] for item in items)
    assert not list(directory.glob("**/*.tmp*")) and not list(directory.glob("**/.*.json*"))


def test_fit_with_a_run_dir_returns_its_result_and_load_run_reproduces_the_metrics(trained):
    directory, metrics = trained
    result = shared_fit()
    assert isinstance(result, TrainResult) and result.run_dir == str(directory) and result.metrics == metrics
    assert len(result.history["loss"]) == EPOCHS and len(result.history["val_HR@10"]) == EPOCHS
    assert len(result.history["val_loss"]) == EPOCHS and all(np.isfinite(result.history["val_loss"]))
    run = load_run(directory)
    assert run.model_config.encoder == "tiny" and run.train_config["epochs"] == EPOCHS
    assert run.data_config.source.startswith("synthetic:") and run.model.has_retrieval
    recomputed = evaluate_run(directory)
    assert set(recomputed) == set(metrics) - HELD_OUT_ONLY
    assert recomputed == pytest.approx({k: metrics[k] for k in recomputed}, abs=1e-6)
    valid = {name: value for name, value in metrics["valid"].items() if name != "baselines"}
    assert evaluate_run(directory, split="valid") == pytest.approx(valid, abs=1e-6)
    assert set(metrics["valid"]["baselines"]) == {"popularity", "transitions", "item-kNN"}


def _trainer_model_data(*flags):
    """(Trainer, model, data) of the tiny configs with `flags` on top."""
    data_config, model_config, train_config = tiny_configs(*flags)
    data = prepare(data_config)
    trainer = Trainer(train_config)
    return trainer, trainer.build_model(model_config, data), data


def test_fit_without_a_run_dir_trains_and_returns_metrics_and_history(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trainer, model, data = _trainer_model_data("--epochs=2", "--max_steps=4", "--steps_per_epoch=2")
    before = [w.numpy().copy() for w in model.trainable_weights]
    result = trainer.fit(model, data)
    assert result.run_dir is None
    assert [len(result.history[key]) for key in ("loss", "val_HR@10", "examples_per_second")] == [2, 2, 2]
    assert all(np.isfinite(result.history["loss"]))
    assert set(result.metrics) >= {"HR@10", "NDCG@10", "Recall@100", "MRR", *HELD_OUT_ONLY}
    assert result.metrics["epochs"] == 2 and result.metrics["examples_per_second"] > 0
    assert 0.0 <= result.metrics["HR@10"] <= 1.0
    assert network_valid(result.metrics, "HR@10") == pytest.approx(max(result.history["val_HR@10"]), abs=1e-6)
    assert any(not np.allclose(b, w.numpy()) for b, w in zip(before, model.trainable_weights))  # it trained
    assert list(tmp_path.iterdir()) == []  # nothing written to the working directory


def test_batch_size_and_epochs_zero_are_derived_from_the_training_windows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trainer, model, data = _trainer_model_data("--batch_size=0", "--epochs=0", "--max_steps=2")
    windows = len(model.train_examples(data.examples["train"])[schema.TARGET_ITEM_ID])
    result = trainer.fit(model, data)
    assert result.metrics["batch_size"] == auto_settings.auto_batch_size(windows) == 8
    assert result.metrics["max_epochs"] == auto_settings.auto_epochs(math.ceil(windows / 8))


def test_best_epoch_weights_are_restored(trained):
    directory, metrics = trained
    epochs = [r for r in read_jsonl(directory / run_dir.TRAINING_LOG) if r["event"] == "epoch"]
    assert [r["epoch"] for r in epochs] == list(range(1, EPOCHS + 1))
    best = max(r["val_HR@10"] for r in epochs)
    assert network_valid(metrics, "HR@10") == pytest.approx(best, abs=1e-6)
    assert json.loads((directory / "checkpoints" / "best.json").read_text())["best"] == pytest.approx(best)


def test_tensorboard_has_loss_metrics_learning_rate(trained):
    directory, _ = trained
    train_scalars = scalar_tags(directory / "tensorboard" / "train")
    for tag in ("epoch_loss", "epoch_learning_rate", "epoch_examples_per_second"):
        assert len(train_scalars[tag]) == EPOCHS, tag
        assert all(np.isfinite(train_scalars[tag]))
    assert train_scalars["batch_loss"]  # every log_every_steps steps
    learning_rates = train_scalars["epoch_learning_rate"]
    assert learning_rates[-1] < learning_rates[0]  # cosine decay
    validation = scalar_tags(directory / "tensorboard" / "validation")
    assert len(validation["epoch_HR@10"]) == EPOCHS and len(validation["epoch_MRR"]) == EPOCHS
    # The loss on the held-out targets, under the same tag as the training loss: one chart, two runs.
    assert len(validation["epoch_loss"]) == EPOCHS and all(np.isfinite(validation["epoch_loss"]))
    assert validation["epoch_loss"] != train_scalars["epoch_loss"]


def test_tensorboard_draws_the_baselines_as_flat_lines_on_the_validation_charts(trained):
    directory, metrics = trained
    for name, figures in metrics["valid"]["baselines"].items():
        reference = scalar_tags(directory / "tensorboard" / f"baseline_{name}")
        for tag in ("HR@10", "NDCG@10"):  # the validation run's tags: the same charts
            assert reference[f"epoch_{tag}"] == pytest.approx([figures[tag]] * EPOCHS), (name, tag)


def test_projector_at_the_log_root_holds_the_item_embeddings_named_and_titled(trained):
    directory, _ = trained
    log_dir = directory / "tensorboard"
    config = (log_dir / "projector_config.pbtxt").read_text()
    fields = dict(re.findall(r'^\s*(\w+): "([^"]*)"$', config, flags=re.M))
    assert fields["tensor_name"] == "item_embeddings" and fields["metadata_path"] == "metadata.tsv"
    items = read_jsonl(directory / run_dir.ITEMS)
    rows = (log_dir / fields["metadata_path"]).read_text().splitlines()
    assert rows[0] == "item_id\ttitle"
    assert [row.split("\t") for row in rows[1:]] == [[item["item_id"], " ".join(item["title"].split())]
                                                    for item in items]
    embeddings = np.loadtxt(log_dir / fields["tensor_path"], delimiter="\t", ndmin=2)  # no TensorFlow needed
    assert embeddings.shape == (len(items), 32) and np.isfinite(embeddings).all()
    # The log root is a run of its own (TensorBoard's default "."), and holds no checkpoint that the
    # runs below it ("train", "validation") would show unlabelled.
    assert list(log_dir.glob("events.out.tfevents.*")) and not (log_dir / "checkpoint").exists()


def test_command_prints_one_line_per_epoch_and_a_summary_off_a_terminal(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY")}
    result = subprocess.run([sys.executable, "-m", "tfrec.train", f"--flagfile={TINY_FLAGS}",
                             f"--run_dir={tmp_path / 'run'}"], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    summary = next(i for i, line in enumerate(lines) if line.startswith("tfrec.train: "))
    assert [re.match(r"epoch (\d)/2: loss \d+\.\d{4}, val_loss \d+\.\d{4}, val_HR@10 ", line) is not None
            for line in lines[:summary]] == [True] * EPOCHS
    assert re.match(rf"tfrec.train: {re.escape(str(tmp_path / 'run'))}: test HR@10 \d\.\d{{4}}, .+ \(2 of 2 epochs, ",
                    lines[summary]), lines[summary]
    table = "\n".join(lines[summary + 1:])  # the model beside its baselines, and the verdict
    assert all(name in table for name in ("this model", "popularity", "transitions", "item-kNN", "validation"))
    assert re.search(r"^(Above every baseline|Below a baseline) on validation", table, flags=re.M), table
    # What is prepared before the first epoch line is said (on standard error), in order.
    assert re.search(r"^tfrec.Trainer: preparing to train retrieval on synthetic:.*\n"
                     r"(.*\n)*tfrec.Trainer: training retrieval on synthetic:.* \d+ training windows",
                     result.stderr, flags=re.M), result.stderr
    output = result.stdout + result.stderr
    assert "\x1b" not in output  # no progress bar escape codes
    assert not re.search(r"^[IWEF]\d{4} |absl::InitializeLog|cuda|tensorflow", output, flags=re.M | re.I), \
        result.stderr  # no TensorFlow log lines


def test_cli_rerun_of_a_finished_run_trains_no_more(trained):
    # The shared run was made through the Python API: the CLI resumes it, so both
    # record the same configs.
    directory, metrics = trained
    again = train.train(train_flags(f"--run_dir={directory}", f"--epochs={EPOCHS}"))
    assert again["HR@10"] == pytest.approx(metrics["HR@10"])
    starts = [r for r in read_jsonl(directory / run_dir.TRAINING_LOG) if r["event"] == "start"]
    assert len(starts) == 1  # the rerun resumed after the last epoch: no epoch started


def test_early_stopping_stops_and_is_not_undone_by_a_rerun(tmp_path):
    # With a vanishing learning rate the validation metric cannot improve after epoch 1.
    args = (f"--run_dir={tmp_path}", "--epochs=4", "--early_stopping_patience=1", "--learning_rate=1e-12")
    metrics = train.train(train_flags(*args))
    epochs = [r["epoch"] for r in read_jsonl(tmp_path / run_dir.TRAINING_LOG) if r["event"] == "epoch"]
    assert epochs == [1, 2] and metrics["epochs"] == 2
    state = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert state["stopped"] and state["epoch"] == 1 and state["wait"] == 1
    train.train(train_flags(*args))
    assert [r["event"] for r in read_jsonl(tmp_path / run_dir.TRAINING_LOG)].count("start") == 1


def test_rerun_with_another_model_is_refused(trained):
    directory, _ = trained
    with pytest.raises(ConfigError, match="--embedding_dim=16: the run directory .* holds a run with 32"):
        train.train(train_flags(f"--run_dir={directory}", "--embedding_dim=16"))
    data_config, model_config, train_config = tiny_configs("--embedding_dim=16")
    data = prepare(data_config)
    trainer = Trainer(train_config)
    with pytest.raises(ConfigError, match=r"ModelConfig\.embedding_dim=16: the run directory .* holds a run with 32"):
        trainer.fit(trainer.build_model(model_config, data), data, run_dir=str(directory))


def test_rerun_with_other_training_settings_is_refused(trained):
    directory, _ = trained
    with pytest.raises(ConfigError, match="--learning_rate=0.5: the run directory .* holds a run with 0.003"):
        train.train(train_flags(f"--run_dir={directory}", "--learning_rate=0.5"))


def test_rerun_on_data_changed_in_place_is_refused(tmp_path):
    source = _no_ratings_source(tmp_path)
    directory = tmp_path / "run"
    flags = (f"--run_dir={directory}", f"--source={source}", "--max_steps=1", "--epochs=1", "--eval_ks=10")
    train.train(train_flags(*flags))
    logs = tmp_path / "logs.csv"
    logs.write_text(logs.read_text().replace("u3,", "u4,", 1))  # same path, same size, other content
    with pytest.raises(ConfigError, match="changed since the run in .* started .*fingerprint"):
        train.train(train_flags(*flags))


def test_fit_refuses_a_model_built_on_another_catalogue():
    data_config, model_config, train_config = tiny_configs()
    data = prepare(data_config)
    other = prepare(data_config.replace(source="synthetic:users=30,items=50,per_user=10,seed=1"))
    trainer = Trainer(train_config)
    with pytest.raises(ConfigError, match="built on another catalogue"):
        trainer.fit(trainer.build_model(model_config, other), data)


@pytest.mark.parametrize(
    "task, target, expected, monitor",
    [("ranking", "rating", {"RMSE", "MAE"}, "val_RMSE"),
     ("multitask", "click", {"HR@10", "NDCG@10", "Recall@100", "MRR", "AUC", "LogLoss"}, "val_HR@10")],
)
def test_ranking_and_multitask_runs_report_their_metrics(tmp_path, task, target, expected, monitor):
    metrics = train.train(train_flags(f"--run_dir={tmp_path}", f"--task={task}", f"--ranking_target={target}",
                                      "--epochs=1", "--max_steps=2"))
    assert set(metrics) - HELD_OUT_ONLY >= expected
    assert set(metrics["valid"]) >= expected
    if "AUC" in expected:
        assert 0.0 <= metrics["AUC"] <= 1.0 and metrics["LogLoss"] > 0
    else:
        assert 0.0 < metrics["RMSE"] < 5.0
    state = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert state["best"] == pytest.approx(network_valid(metrics, monitor.removeprefix("val_")))


def _no_ratings_source(tmp_path):
    interactions = tmp_path / "logs.csv"
    interactions.write_text("user_id,item_id,timestamp\n" + "".join(
        f"u{u},i{(u * 7 + t) % 30},{1000 + t}\n" for u in range(10) for t in range(8)))
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n" + "".join(f"i{i},Item number {i}\n" for i in range(30)))
    return f"table:interactions={interactions},items={items}"


# (id, flags, library message, command-line message): the library names the
# config field (`ClassName.field=value`), the command line the flag (`--field=value`).
INVALID = [
    ("unknown_source", ["--source=nosuch:abc"], "KIND", "--source=nosuch:abc: "),
    ("missing_directory", ["--source=movielens:/no/such/dir"], "/no/such/dir", "--source=movielens:/no/such/dir: "),
    ("ranking_without_ratings", ["--task=ranking", "NO_RATINGS"],
     "ModelConfig.task='ranking' with ranking_target='rating' needs ratings",
     "--task='ranking' with ranking_target='rating' needs ratings"),
    ("k_above_catalogue", ["--eval_ks=10,500"], "TrainConfig.eval_ks=10,500: K=500 is larger than the catalogue",
     "--eval_ks=10,500: K=500 is larger than the catalogue"),
    ("trainable_syntax", ["--encoder_trainable=top:x"], "ModelConfig.encoder_trainable='top:x': expected",
     "--encoder_trainable='top:x': expected"),
    ("trainable_above_layers", ["--encoder_trainable=top:9"], "top:9", "top:9"),
    ("unknown_monitor", ["--monitor=val_RMSE"], "TrainConfig.monitor='val_RMSE': expected one of",
     "--monitor='val_RMSE': expected one of"),
    ("batch_size_negative", ["--batch_size=-8"], "TrainConfig.batch_size=-8: expected a value >= 0",
     "--batch_size=-8: expected a value >= 0"),
    ("bad_split_fractions", ["--split_fractions=0.5,0.1,0.1"], "DataConfig.split_fractions=(0.5, 0.1, 0.1): expected 3",
     "--split_fractions=(0.5, 0.1, 0.1): expected 3"),
    ("bad_eval_ks", ["--eval_ks=10,x"], None, "--eval_ks=10,x: expected int values"),
]


@pytest.mark.parametrize("args, message", [pytest.param(case[1], case[3], id=case[0]) for case in INVALID])
def test_invalid_flags_fail_before_training(tmp_path, args, message):
    args = [f"--source={_no_ratings_source(tmp_path)}" if arg == "NO_RATINGS" else arg for arg in args]
    directory = tmp_path / "run"
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        train.train(train_flags(f"--run_dir={directory}", *args))
    assert not re.search(r"[A-Z]\w*Config\.\w+=", str(raised.value))  # flags, not config fields
    assert not (directory / run_dir.TRAINING_LOG).exists()
    assert not (directory / "checkpoints").exists()


def _fit_configs(data_config, model_config, train_config, directory):
    """The Python API path: prepare, Trainer, build_model, fit."""
    data = prepare(data_config)
    trainer = Trainer(train_config)
    model = trainer.build_model(model_config, data)
    return trainer.fit(model, data, run_dir=str(directory))


@pytest.mark.parametrize("args, message", [pytest.param(case[1], case[2], id=case[0])
                                           for case in INVALID if case[2] is not None])
def test_invalid_configs_fail_before_training(tmp_path, args, message):
    args = [f"--source={_no_ratings_source(tmp_path)}" if arg == "NO_RATINGS" else arg for arg in args]
    values = train_flags("--run_dir=unused", *args)
    # The configs as the flags give them, unvalidated: the library checks them.
    configs = [cls(**{field.name: values[field.name].value for field in dataclasses.fields(cls)})
               for cls in train.CONFIGS]
    configs[0] = configs[0].replace(split_fractions=tuple(float(v) for v in configs[0].split_fractions))
    configs[2] = configs[2].replace(eval_ks=tuple(int(v) for v in configs[2].eval_ks))
    directory = tmp_path / "run"
    with pytest.raises((ConfigError, DataError, ValueError), match=re.escape(message)):
        _fit_configs(*configs, directory)
    assert not (directory / run_dir.TRAINING_LOG).exists()
    assert not (directory / "checkpoints").exists()


def test_unknown_task_is_refused_by_config_and_flag():
    _, model_config, _ = tiny_configs()
    with pytest.raises(ConfigError, match=re.escape("ModelConfig.task='nosuch': expected one of")):
        model_config.replace(task="nosuch").validate()
    with pytest.raises(flags.IllegalFlagValueError, match="nosuch"):
        train_flags("--run_dir=unused", "--task=nosuch")


def test_a_run_dir_that_is_a_file_is_refused_before_the_data_loads(tmp_path):
    path = tmp_path / "run"
    path.write_text("not a directory")
    with pytest.raises(ConfigError, match="the run directory .* is a file; expected a directory"):
        train.train(train_flags(f"--run_dir={path}", "--source=movielens:/no/such/dir"))  # the data is never read


def test_run_dir_is_required_by_the_cli():
    with pytest.raises(ConfigError, match="--run_dir is required"):
        train.train(train_flags())


def test_batch_size_must_split_over_replicas():
    with pytest.raises(ConfigError, match=r"TrainConfig\.batch_size=33 .* divisible by the 2 replicas") as raised:
        checks.check_batch_split(33, 2)
    assert re.search(r"^--batch_size=33 .* divisible by the 2 replicas", config_flags.flag_message(raised.value))
    checks.check_batch_split(32, 2)
