"""Helpers shared by the training tests: flag parsing, the shared tiny run, reading logs."""

import atexit
import functools
import json
import os
import pathlib
import shutil
import tempfile

import pytest
import tensorflow as tf
from absl import flags

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY_FLAGS = REPO_ROOT / "configs" / "synthetic_tiny.flags"


def parse_flags(*args, flagfile=TINY_FLAGS):
    """Resets every flag to its default, then parses `flagfile` and `args`."""
    values = flags.FLAGS
    values.unparse_flags()
    values(["tfrec", f"--flagfile={flagfile}", "--verbose=0", *args])
    return values


@pytest.fixture(autouse=True)
def default_flags_after_test():
    """Leaves every flag at its default (parsed) after a test that parsed flags."""
    yield
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["tfrec"])


SHARED_RUN_EPOCHS = 2


@functools.lru_cache(maxsize=None)
def shared_run():
    """One tiny training run, made once per test session and shared by the
    test modules that only read it: (run directory, returned metrics)."""
    from tfrec import train

    directory = pathlib.Path(tempfile.mkdtemp(prefix="tfrec-run-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    metrics = train.train(parse_flags(f"--run_dir={directory}", f"--epochs={SHARED_RUN_EPOCHS}"))
    return directory, metrics


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
