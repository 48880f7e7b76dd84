"""The learning-rate schedule and the optimizer of a training run."""

import keras
import pytest

from tfrec.training import auto_settings, callbacks
from tfrec.training.optimizer import WarmupDecay, build_optimizer


def _rates(schedule, steps):
    return [float(schedule(step)) for step in steps]


def test_warmup_then_cosine_decay():
    schedule = WarmupDecay(1e-3, total_steps=110, warmup_steps=10, decay="cosine")
    assert _rates(schedule, [0, 4, 9]) == pytest.approx([1e-4, 5e-4, 1e-3])
    assert _rates(schedule, [10, 60, 110, 500]) == pytest.approx([1e-3, 5e-4, 0.0, 0.0], abs=1e-9)


def test_linear_and_constant_decay():
    linear = WarmupDecay(1e-3, total_steps=100, decay="linear", final_fraction=0.1)
    assert _rates(linear, [0, 50, 100]) == pytest.approx([1e-3, 5.5e-4, 1e-4])
    assert _rates(WarmupDecay(1e-3, total_steps=100, decay="constant"), [0, 99]) == pytest.approx([1e-3, 1e-3])
    with pytest.raises(ValueError, match="decay must be one of"):
        WarmupDecay(1e-3, total_steps=100, decay="step")


def test_schedule_round_trips_through_keras_serialization():
    schedule = WarmupDecay(2e-3, total_steps=50, warmup_steps=5, decay="linear", final_fraction=0.2)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert restored.get_config() == schedule.get_config()


def test_adamw_with_clipping_and_no_decay_on_biases_and_norms():
    optimizer = build_optimizer(1e-3, total_steps=100, warmup_steps=10, weight_decay=0.05, clipnorm=1.0)
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert optimizer.weight_decay == pytest.approx(0.05) and optimizer.global_clipnorm == 1.0
    dense = keras.layers.Dense(2, name="projection")
    norm = keras.layers.LayerNormalization(name="layer_norm")
    dense.build((None, 3))
    norm.build((None, 2))
    decayed = {v.path: optimizer._use_weight_decay(v) for v in dense.weights + norm.weights}
    assert decayed == {"projection/kernel": True, "projection/bias": False,
                       "layer_norm/gamma": False, "layer_norm/beta": False}
    assert build_optimizer(1e-3, total_steps=10, clipnorm=0).global_clipnorm is None


@pytest.mark.parametrize("windows, replicas, batch", [
    (10, 1, 8), (4930, 1, 8), (8_000, 1, 16), (64_000, 1, 128), (10**7, 1, 256), (4930, 3, 9), (10**7, 3, 258)])
def test_auto_batch_size_grows_with_the_windows_within_bounds(windows, replicas, batch):
    assert auto_settings.auto_batch_size(windows, replicas) == batch


@pytest.mark.parametrize("steps, epochs", [(1, 100), (617, 33), (190, 100), (5_000, 4), (100_000, 3)])
def test_auto_epochs_aim_at_a_step_budget_within_bounds(steps, epochs):
    assert auto_settings.auto_epochs(steps) == epochs


def _stopping_epochs(values, tmp_path, patience, smoothing):
    """The epoch after which `BestWeights` stops on `values`, or None, and its best epoch."""
    best = callbacks.BestWeights("val_HR@10", str(tmp_path), patience=patience, smoothing=smoothing)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    best.set_model(model)
    for epoch, value in enumerate(values):
        best.on_epoch_end(epoch, {"val_HR@10": value})
        if best.state["stopped"]:
            return epoch + 1, best.state["epoch"]
    return None, best.state["epoch"]


def test_early_stopping_is_not_ended_by_one_lucky_epoch(tmp_path):
    # a rising curve with one lucky epoch (the 4th): epoch by epoch it stops at the 7th, averaged it goes on
    values = [0.10, 0.14, 0.16, 0.22, 0.17, 0.18, 0.19, 0.20, 0.21, 0.215]
    assert _stopping_epochs(values, tmp_path / "raw", patience=3, smoothing=1) == (7, 4)
    assert _stopping_epochs(values, tmp_path / "mean", patience=3, smoothing=3) == (None, 4)
    # a curve that has really stopped improving still stops
    flat = [0.10, 0.20, 0.21, 0.20, 0.19, 0.20, 0.19, 0.18, 0.19, 0.18]
    assert _stopping_epochs(flat, tmp_path / "flat", patience=3, smoothing=3)[0] == 7
    assert auto_settings.stopping_smoothing(8) == 4 and auto_settings.stopping_smoothing(2) == 1


def test_early_stopping_state_resumes_with_its_recent_values(tmp_path):
    values = [0.10, 0.20, 0.15, 0.15, 0.15]
    first = callbacks.BestWeights("val_HR@10", str(tmp_path), patience=10, smoothing=3)
    first.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    for epoch, value in enumerate(values[:3]):
        first.on_epoch_end(epoch, {"val_HR@10": value})
    resumed = callbacks.BestWeights("val_HR@10", str(tmp_path), patience=10, smoothing=3)
    assert resumed.state["recent"] == pytest.approx([0.10, 0.20, 0.15]) and resumed.state["epoch"] == 2


def test_a_state_written_before_smoothing_keeps_its_count(tmp_path):
    (tmp_path / "best.json").write_text('{"best": 0.3, "epoch": 5, "wait": 7, "stopped": false}')
    best = callbacks.BestWeights("val_HR@10", str(tmp_path), patience=8, smoothing=4)
    best.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    best.on_epoch_end(12, {"val_HR@10": 0.25})  # below the old best: the eighth epoch without improvement
    assert best.state["stopped"] and best.state["wait"] == 8
