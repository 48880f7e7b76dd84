"""Multi-replica training on logical CPUs (in a subprocess: the CPU can only be
split before TensorFlow initialises its devices, which other tests do first)."""

import json
import math
import subprocess
import sys
import textwrap

import pytest

from train_helpers import REPO_ROOT, TINY_FLAGS, subprocess_env

# 64 users with the same number of training interactions: 64 training windows
# carrying the same number of next-item predictions each. With a global batch of
# 64 the first batch holds every window whatever the shuffle, and the mean loss
# of each replica's half batch averages to the loss of the whole batch. The
# encoder is frozen and dropout off, so nothing random differs between runs (a
# trainable BERT runs its own internal dropout).
SOURCE = "synthetic:users=64,items=150,per_user=6,seed=0"

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from absl import flags
    from tfrec import train
    from tfrec.config import ConfigError
    from tfrec.training import TrainConfig, Trainer

    def run(*args):
        values = flags.FlagValues()
        train.define_flags(values)
        values(["train", "--flagfile=%s", "--verbose=0", "--cpu_replicas=2", "--max_steps=1",
                "--steps_per_epoch=1", "--epochs=1", "--dropout=0", "--encoder_trainable=none", "--batch_size=64",
                "--source=" + sys.argv[2], *args])
        return train.train(values)

    def error_of(call):
        try:
            call()
        except ConfigError as e:
            return str(e)
        return None

    out = sys.argv[1]
    errors = {
        "cli": error_of(lambda: run("--run_dir=" + out + "/bad", "--strategy=mirrored", "--batch_size=33")),
        "library": error_of(lambda: Trainer(TrainConfig(strategy="mirrored", cpu_replicas=2, batch_size=33))),
    }
    run("--run_dir=" + out + "/one", "--strategy=one_device")
    run("--run_dir=" + out + "/two", "--strategy=mirrored")
    print(json.dumps(errors))
    """
    % TINY_FLAGS
)


def _first_epoch(directory):
    with open(directory / "training_log.jsonl") as f:
        return next(r for r in map(json.loads, f) if r["event"] == "epoch")


def _table_source_with_unequal_histories(directory):
    """64 users with 5 to 11 interactions: replicas get different numbers of predicted positions."""
    rows = ["user_id,item_id,timestamp"]
    for user in range(64):
        for step in range(5 + user % 7):
            rows.append(f"u{user},i{(user * 7 + step * 3) % 150},{1000 * user + step}")
    (directory / "logs.csv").write_text("\n".join(rows) + "\n")
    words = "space love war crime comedy robot paris drama".split()
    items = ["item_id,title"] + [f"i{i},{words[i % 8]} {words[(i // 8) % 8]} {i}" for i in range(150)]
    (directory / "items.csv").write_text("\n".join(items) + "\n")
    return f"table:interactions={directory / 'logs.csv'},items={directory / 'items.csv'}"


@pytest.mark.parametrize("histories", ["equal", "unequal"])
def test_two_replicas_match_one_replica_first_step_loss(tmp_path, histories):
    source = SOURCE if histories == "equal" else _table_source_with_unequal_histories(tmp_path)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), source], cwd=REPO_ROOT,
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    errors = json.loads(done.stdout.strip().splitlines()[-1])
    assert "--batch_size=33 is the global batch size and must be divisible by the 2 replicas" in errors["cli"]
    assert "TrainConfig.batch_size=33 is the global batch size and must be divisible by the 2 replicas" \
        in errors["library"]
    assert not (tmp_path / "bad").exists()
    one, two = (json.loads((tmp_path / d / "config.json").read_text()) for d in ("one", "two"))
    assert (one["num_replicas"], two["num_replicas"]) == (1, 2)
    first_one, first_two = _first_epoch(tmp_path / "one"), _first_epoch(tmp_path / "two")
    assert first_one["step"] == first_two["step"] == 1
    assert math.isclose(first_one["loss"], first_two["loss"], rel_tol=1e-5)


def test_auto_strategy_on_one_device_is_the_default_strategy():
    # OneDeviceStrategy's distributed input iterator slows every step (scripts/bench_training.py).
    import tensorflow as tf

    from tfrec.training import devices

    assert devices.make_strategy("auto", cpu_replicas=1) is tf.distribute.get_strategy()
    assert isinstance(devices.make_strategy("one_device"), tf.distribute.OneDeviceStrategy)
