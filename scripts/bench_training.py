"""Benchmark: training speed of a config under each `--strategy` on this machine.

Runs `python -m tfrec.train` for a few short epochs per strategy (the same
config, data and seed), each in its own process since a process sets up its
devices once, reads the training examples per second of each epoch
after the first (which includes tracing) from `DIR/training_log.jsonl`, and
prints a table of the median rate, the step time and the ratio to the fastest.
Writes it into BENCHMARKS.md between `<!-- bench_training -->` markers.

    nice -n 10 python scripts/bench_training.py [--flagfile_under_test=configs/ml100k_retrieval.flags]
"""

import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import benchlib
from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
STRATEGIES = ("auto", "one_device")

flags.DEFINE_string("flagfile_under_test", "configs/ml100k_retrieval.flags", "Training config to time.")
flags.DEFINE_integer("epochs", 3, "Epochs per strategy; the first one is not counted.")
flags.DEFINE_integer("steps_per_epoch", 100, "Steps per timed epoch.")
flags.DEFINE_string("benchmarks_file", str(ROOT / "BENCHMARKS.md"), "Markdown file receiving the table.")
FLAGS = flags.FLAGS


def examples_per_second(strategy, run_dir):
    """Median training examples/s over the epochs after the first, and the batch size, for one `--strategy`."""
    command = [sys.executable, "-m", "tfrec.train", f"--flagfile={FLAGS.flagfile_under_test}",
               f"--run_dir={run_dir}", f"--strategy={strategy}", f"--epochs={FLAGS.epochs}",
               f"--steps_per_epoch={FLAGS.steps_per_epoch}", "--verbose=0"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    with open(os.path.join(run_dir, "training_log.jsonl")) as f:
        rates = [r["examples_per_second"] for r in map(json.loads, f) if r["event"] == "epoch"]
    with open(os.path.join(run_dir, "metrics.json")) as f:
        batch_size = json.load(f)["batch_size"]  # as trained (a config's 0 means derived from the data)
    return statistics.median(rates[1:]), batch_size


def table(results):
    """Markdown rows from {strategy: (examples/s, batch size)}."""
    fastest = max(rate for rate, _ in results.values())
    lines = ["| `--strategy` | training examples/s | ms per step | relative to the fastest |", "|---|---:|---:|---:|"]
    for strategy, (rate, batch_size) in results.items():
        lines.append(f"| {strategy} | {rate:.1f} | {1000 * batch_size / rate:.0f} | {rate / fastest:.2f} |")
    return "\n".join(lines)


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as scratch:
        results = {strategy: examples_per_second(strategy, os.path.join(scratch, strategy))
                   for strategy in STRATEGIES}
    body = table(results)
    print(body)
    command = "nice -n 10 python scripts/bench_training.py " + " ".join(sys.argv[1:])
    measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    benchlib.write_section(
        FLAGS.benchmarks_file, "bench_training",
        f"## Training speed (`{FLAGS.flagfile_under_test}`)\n\n`{command.strip()}`\n\n"
        f"Machine: {benchlib.machine()}, measured {measured}. auto on one device is TensorFlow's default "
        f"strategy; one_device is `tf.distribute.OneDeviceStrategy`. Examples are history windows, "
        f"each training up to 100 next-item predictions.\n\n{body}",
    )
    print(f"\nwritten to {FLAGS.benchmarks_file}")


if __name__ == "__main__":
    app.run(main)
