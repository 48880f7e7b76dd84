"""Warm start (`tfrec.training.warm_start`) and the refresh with its before/after gate
(`tfrec.refreshing`, `python -m tfrec.refresh`), on the shared tiny run and generated new logs."""

import dataclasses
import json
import os

import numpy as np
import pytest
from train_helpers import shared_run

from tfrec.config import ConfigError
from tfrec.data import DataConfig, prepare, synthetic
from tfrec.exporting import exporter, layout
from tfrec.training import TrainConfig, Trainer, auto_settings, load_run
from tfrec.refreshing import RefreshConfig, gate, refresh
from tfrec.training.warm_start import warm_start_model

GROWN = "synthetic:users=80,items=140,per_user=20,seed=0"  # the shared run's 60 users and 120 items, and more


def _id_rows(model):
    return model.item_tower.id_embedding.embeddings.numpy()


def test_warm_start_keeps_known_weights_and_starts_new_items_from_text():
    run_dir, _ = shared_run()
    old = load_run(str(run_dir))
    data = prepare(DataConfig(source=GROWN, history_length=20))
    model = warm_start_model(str(run_dir), data)
    known = [item for item in data.vocab.item_ids[1:] if item in set(old.vocab.item_ids)]
    new = [item for item in data.vocab.item_ids[1:] if item not in set(old.vocab.item_ids)]
    assert len(known) == 120 and len(new) == 20
    np.testing.assert_array_equal(_id_rows(model)[data.vocab.item_index(known)],
                                  _id_rows(old.model)[old.vocab.item_index(known)])
    assert not _id_rows(model)[data.vocab.item_index(new)].any()  # scored from their text until they train
    np.testing.assert_array_equal(model.behaviour_tower.position_embedding.embeddings.numpy(),
                                  old.model.behaviour_tower.position_embedding.embeddings.numpy())
    assert model.vocab.num_users == 80 and old.vocab.num_users == 60 and model.warm_started_from == str(run_dir)

    before = _id_rows(model).copy()
    result = Trainer(TrainConfig(batch_size=32, steps_per_epoch=400, max_steps=3, verbose=0)).fit(model, data)
    assert result.metrics["max_epochs"] == auto_settings.auto_epochs(400, warm_start=True) == 9
    assert auto_settings.auto_epochs(400) == 50  # the schedule of a new model: about six times longer
    assert np.isfinite(result.history["loss"]).all() and not np.allclose(_id_rows(model), before)


def test_warm_start_refuses_a_change_of_architecture_and_allows_training_fields():
    run_dir, _ = shared_run()
    data = prepare(DataConfig(source=GROWN, history_length=20))
    config = load_run(str(run_dir)).model_config
    with pytest.raises(ConfigError, match=r"ModelConfig.embedding_dim=16: the run at .* was trained with 32"):
        warm_start_model(str(run_dir), data, dataclasses.replace(config, embedding_dim=16))
    model = warm_start_model(str(run_dir), data, dataclasses.replace(config, dropout=0.3, id_dropout=0.5))
    assert model.cfg.id_dropout == 0.5


def _new_logs(directory, after, seed=3, shift=True):
    """A table source of generated logs (more users and items) timed after `after` (or not, for overlap)."""
    generated = synthetic.generate(users=70, items=130, per_user=6, seed=seed)
    logs = generated.interactions.copy()
    if shift:
        logs["timestamp"] = logs["timestamp"] - logs["timestamp"].min() + after + 1
    logs.to_csv(directory / "logs.csv", index=False)
    generated.items.to_csv(directory / "items.csv", index=False)
    return DataConfig(source=f"table:interactions={directory / 'logs.csv'},items={directory / 'items.csv'}")


def _served_end(run_dir):
    return int(prepare(load_run(str(run_dir)).data_config).tables.interactions["timestamp"].max())


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory):
    """A refresh that passes its gate (any change accepted) after a first export of the served run."""
    run_dir, _ = shared_run()
    directory = tmp_path_factory.mktemp("refresh")
    base = str(directory / "exports")
    exporter.export_run(str(run_dir), base, "m", exporter.ExportOptions(allow_below_baseline=True))
    new_logs = _new_logs(directory, _served_end(run_dir))
    config = RefreshConfig(str(run_dir), str(directory / "run2"), base, "m", min_improvement=-1.0,
                           allow_below_baseline=True)
    result = refresh(config, new_logs, TrainConfig(epochs=1, batch_size=32, verbose=0))
    return run_dir, directory, base, new_logs, result


def test_refresh_exports_a_model_that_passes_the_gate_with_both_figures_in_its_card(refreshed):
    _, directory, base, _, result = refreshed
    assert result.passed and result.exported.version == 2 and result.gate_metric == "HR@10"
    assert layout.existing_versions(os.path.join(base, "m")) == [1, 2]
    with open(os.path.join(result.exported.path, "assets", "model_card.json")) as f:
        card = json.load(f)
    assert card["refresh"]["before"] == pytest.approx(result.before)
    assert card["refresh"]["after"] == pytest.approx(result.after) and card["refresh"]["served_version"] == 1
    assert card["training"]["warm_start_from"] == str(shared_run()[0])
    with open(directory / "run2" / "refresh.json") as f:
        assert json.load(f)["exported_version"] == 2


def test_refresh_gate_refuses_a_model_that_is_not_better_enough(refreshed, tmp_path):
    run_dir, _, base, new_logs, _ = refreshed
    config = RefreshConfig(str(run_dir), str(tmp_path / "run3"), base, "m", min_improvement=1.0,
                           allow_below_baseline=True)
    result = refresh(config, new_logs, TrainConfig(epochs=1, batch_size=32, verbose=0))
    assert not result.passed and result.exported is None and "not exported" in result.verdict
    assert layout.existing_versions(os.path.join(base, "m")) == [1, 2]
    with open(tmp_path / "run3" / "refresh.json") as f:
        report = json.load(f)
    assert report["exported_version"] is None and report["before"]["HR@10"] == pytest.approx(result.before["HR@10"])


def test_refresh_refuses_logs_that_overlap_the_served_window(tmp_path):
    run_dir, _ = shared_run()
    overlapping = _new_logs(tmp_path, 0, shift=False)
    with pytest.raises(ConfigError, match=r"overlap its training window; .*--allow_overlap"):
        refresh(RefreshConfig(str(run_dir), str(tmp_path / "run"), str(tmp_path / "exports"), "m"), overlapping)
    assert not os.path.exists(tmp_path / "run")


def test_gate_compares_in_the_metrics_direction():
    assert gate({"HR@10": 0.10}, {"HR@10": 0.11}, "HR@10", 0.0)[0]
    assert not gate({"HR@10": 0.10}, {"HR@10": 0.09}, "HR@10", 0.0)[0]
    assert gate({"RMSE": 1.0}, {"RMSE": 0.9}, "RMSE", 0.05)[0]
    passed, verdict = gate({"RMSE": 1.0}, {"RMSE": 1.01}, "RMSE", 0.0)
    assert not passed and "lower is better" in verdict
    with pytest.raises(ConfigError, match=r"RefreshConfig.gate_metric='AUC': expected one of the model's metrics"):
        gate({"HR@10": 0.1}, {"HR@10": 0.1}, "AUC", 0.0)


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
    """A tiny run with a frozen encoder: its text vectors are weights, so loading it encodes nothing."""
    from tfrec.models import ModelConfig, build_model

    data = prepare(DataConfig(source="synthetic:users=60,items=120,per_user=20,seed=0", history_length=20))
    config = ModelConfig(encoder="tiny", sequence_length=16, embedding_dim=32, history_layers=1)
    model = build_model(config, data)
    directory = str(tmp_path_factory.mktemp("frozen"))
    Trainer(TrainConfig(epochs=1, batch_size=32, verbose=0)).fit(model, data, run_dir=directory)
    return directory, model, data


def test_loading_a_frozen_run_reads_its_text_vectors_instead_of_encoding(frozen_run):
    directory, model, data = frozen_run
    loaded = load_run(directory).model
    np.testing.assert_allclose(loaded.item_tower.text_vectors.numpy(), model.item_tower.text_vectors.numpy())
    histories = [data.vocab.item_ids[1:4], data.vocab.item_ids[7:9]]
    np.testing.assert_allclose(loaded.recommend(histories, k=5)[1], model.recommend(histories, k=5)[1], atol=1e-5)


def test_warm_start_from_a_frozen_run_encodes_only_the_new_items(frozen_run):
    from tfrec.models import build_model

    directory, model, _ = frozen_run
    grown = prepare(DataConfig(source=GROWN, history_length=20))
    warm = warm_start_model(directory, grown)
    fresh = build_model(model.cfg, grown)  # every text encoded
    np.testing.assert_allclose(warm.item_tower.text_vectors.numpy(), fresh.item_tower.text_vectors.numpy(), atol=1e-5)
    known = model.vocab.item_ids[1:]
    np.testing.assert_allclose(warm.item_embeddings(grown.vocab.item_index(known)).numpy(),
                               model.item_embeddings(model.vocab.item_index(known)).numpy(), atol=1e-5)


def test_a_warm_start_of_a_fine_tuned_encoder_recomputes_its_text_bank_under_the_copied_weights(tmp_path):
    from tfrec.models import ModelConfig, build_model

    data = prepare(DataConfig(source="synthetic:users=60,items=120,per_user=20,seed=0", history_length=20))
    config = ModelConfig(encoder="tiny", sequence_length=16, embedding_dim=32, history_layers=1,
                         encoder_trainable="top:1", text_refresh_items=16)
    model = build_model(config, data)
    Trainer(TrainConfig(epochs=2, batch_size=32, learning_rate=3e-2, verbose=0)).fit(model, data, run_dir=str(tmp_path))
    grown = prepare(DataConfig(source=GROWN, history_length=20))
    tower = warm_start_model(str(tmp_path), grown).item_tower
    top_layer = [w.numpy() for w in tower.text_encoder.trainable_weights]
    np.testing.assert_array_equal(top_layer[0], model.item_tower.text_encoder.trainable_weights[0].numpy())
    every = np.arange(1, tower.num_rows)
    # The bank training reads for the items a step does not re-encode: every item under the copied weights.
    np.testing.assert_allclose(tower.text_bank.numpy()[every],
                               tower._catalogue_text_vectors(every, training=False).numpy(), atol=1e-5)


def test_train_cli_warm_starts_from_a_run_and_refuses_an_architecture_flag(tmp_path):
    from train_helpers import train_flags

    from tfrec import train

    run_dir, _ = shared_run()
    args = (f"--warm_start_from={run_dir}", f"--source={GROWN}", "--epochs=1")
    metrics = train.train(train_flags(*args, f"--run_dir={tmp_path / 'warm'}", "--dropout=0.3"))
    with open(tmp_path / "warm" / "config.json") as f:
        config = json.load(f)
    assert config["warm_start_from"] == str(run_dir) and config["model_config"]["dropout"] == 0.3
    assert config["model_config"]["embedding_dim"] == 32 and 0 <= metrics["HR@10"] <= 1
    with pytest.raises(ConfigError, match=r"--embedding_dim=16: the run at .* was trained with 32"):
        train.train(train_flags(*args, f"--run_dir={tmp_path / 'other'}", "--embedding_dim=16"))


def test_refresh_config_names_the_field_at_fault():
    with pytest.raises(ConfigError, match=r"RefreshConfig.model_name=None: required"):
        RefreshConfig("runs/a", "runs/b").validate()
    with pytest.raises(ConfigError, match=r"RefreshConfig.test_fraction=1.0: expected a value < 1.0"):
        RefreshConfig("runs/a", "runs/b", model_name="m", test_fraction=1.0).validate()
    with pytest.raises(ConfigError, match=r"RefreshConfig.run_dir='runs/a/': the refreshed model needs its own"):
        RefreshConfig("runs/a", "runs/a/", model_name="m").validate()


def test_refresh_cli_names_the_overlap_and_exits_1(tmp_path):
    import subprocess
    import sys

    from train_helpers import REPO_ROOT, subprocess_env

    run_dir, _ = shared_run()
    overlapping = _new_logs(tmp_path, 0, shift=False)
    process = subprocess.run(
        [sys.executable, "-m", "tfrec.refresh", f"--serving_run={run_dir}", f"--source={overlapping.source}",
         f"--run_dir={tmp_path / 'run'}", f"--export_base={tmp_path / 'exports'}", "--model_name=m"],
        cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert process.returncode == 1
    assert "tfrec.refresh: error: --source=" in process.stderr and "--allow_overlap" in process.stderr
    assert not (tmp_path / "run").exists()


def test_fine_tuning_a_warm_start_on_a_few_new_logs_keeps_the_items_they_do_not_name():
    run_dir, _ = shared_run()
    data = prepare(DataConfig(source=GROWN, history_length=20))
    model = warm_start_model(str(run_dir), data)
    known = data.vocab.item_index(load_run(str(run_dir)).vocab.item_ids[1:])
    older = data.split.train[data.split.train["timestamp"] < np.quantile(data.split.train["timestamp"], 0.95)]
    recent = data.training_not_in(older)
    named = set(recent.examples["train"]["target_item_id"]) | set(recent.examples["train"]["history_item_ids"].ravel())
    assert set(known) - named  # items the new logs do not name
    model.adapt(recent.examples["train"])
    assert model.trained_items.numpy()[known].all()  # still scored with their id embeddings


def test_training_not_in_keeps_what_was_not_trained_and_replays_the_rest_of_a_share_of_users():
    data = prepare(DataConfig(source=GROWN, history_length=20))
    train = data.examples["train"]
    times, users = train["target_timestamp"], train["user_index"]
    since = int(np.quantile(times, 0.8))
    trained = data.split.train[data.split.train["timestamp"] < since]
    trained = trained.drop(trained.groupby("user_id").tail(1).index)  # a previous model's held-out last ones
    untrained = data.training_not_in(trained).examples["train"]
    expected = len(times) - int((times < since).sum()) + trained["user_id"].nunique()
    assert len(untrained["target_timestamp"]) == expected  # the new examples and each user's held-out one
    assert (untrained["target_timestamp"] >= since).sum() == (times >= since).sum()
    half = data.training_not_in(trained, replay=0.5, seed=3).examples["train"]
    kept = set(zip(half["user_index"], half["target_timestamp"])) - set(
        zip(untrained["user_index"], untrained["target_timestamp"]))
    replayed = {user for user, _ in kept}
    assert 0.3 < len(replayed) / len(set(users)) < 0.7
    assert len(kept) == sum(int((users == user).sum()) for user in replayed) - sum(
        int((untrained["user_index"] == user).sum()) for user in replayed)  # a replayed user keeps every example
    assert data.training_not_in(trained, replay=1.0).num_examples("train") == len(times)
    with pytest.raises(ConfigError, match=r"all \d+ training examples are among the \d+ trained behaviours"):
        data.training_not_in(data.split.train)
    with pytest.raises(ConfigError, match=r"replay=1.5: expected a share in \[0, 1\]"):
        data.training_not_in(trained, replay=1.5)
