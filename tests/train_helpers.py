"""Helpers shared by the training tests: CLI flag values, the shared tiny run, reading logs."""

import atexit
import functools
import json
import os
import pathlib
import shutil
import tempfile

import tensorflow as tf
from absl import flags

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY_FLAGS = REPO_ROOT / "configs" / "synthetic_tiny.flags"


def train_flags(*args, flagfile=TINY_FLAGS):
    """A fresh `FlagValues` with the flags of `python -m tfrec.train`, parsed from
    `flagfile` (None: no flagfile), `--verbose=0` and `args` (global `flags.FLAGS`
    is not touched)."""
    from tfrec import train

    values = flags.FlagValues()
    train.define_flags(values)
    values(["tfrec.train", *([f"--flagfile={flagfile}"] if flagfile else []), "--verbose=0", *args])
    return values


SHARED_RUN_EPOCHS = 2


@functools.lru_cache(maxsize=None)
def shared_fit():
    """One tiny training run through the Python API, made once per test session:
    the `TrainResult` of `Trainer(...).fit(model, data, run_dir=...)` on the
    configs of the tiny flagfile with `SHARED_RUN_EPOCHS` epochs."""
    from tfrec import train
    from tfrec.data import prepare
    from tfrec.training import Trainer

    directory = pathlib.Path(tempfile.mkdtemp(prefix="tfrec-run-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    values = train_flags(f"--run_dir={directory}", f"--epochs={SHARED_RUN_EPOCHS}")
    data_config, model_config, train_config = train.configs_from_flags(values)
    data = prepare(data_config)
    trainer = Trainer(train_config)
    model = trainer.build_model(model_config, data)
    return trainer.fit(model, data, run_dir=str(directory))


def shared_run():
    """The shared tiny run, for the test modules that only read it:
    (run directory as a `pathlib.Path`, its metrics, i.e. `metrics.json`)."""
    result = shared_fit()
    return pathlib.Path(result.run_dir), result.metrics


def subprocess_env():
    return dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def scalar_tags(log_dir):
    """{tag: [values]} of every scalar summary in the event files under `log_dir`."""
    values = {}
    for event_file in pathlib.Path(log_dir).glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                values.setdefault(value.tag, []).append(number)
    return values
