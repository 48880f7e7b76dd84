"""Benchmark: peak memory of training from a `tfrecord:` source as the data grows.

Generates synthetic logs at 1x and SCALEx the behaviours (the same users and
items, SCALE times the behaviours per user, so the held-out examples stay the
same and only the training examples grow), converts each with `python -m
tfrec.data convert`, then trains one epoch on each from the converted files
(`--source=tfrecord:DIR`, streamed) and from the same source in memory. Each
run is its own process; its peak resident memory is the kernel's
(`wait4` rusage). Prints the table and writes it into BENCHMARKS.md between
`<!-- bench_streaming -->` markers.

    nice -n 10 python scripts/bench_streaming.py [--users=2000 --items=1000 --per_user=20 --scale=10]
"""

import os
import pathlib
import subprocess
import sys
import tempfile
import time

import benchlib
from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
GOAL = 1.5
"""Peak memory of the streamed run at SCALEx the data, as a multiple of that at 1x, at most."""

flags.DEFINE_integer("users", 2000, "Synthetic users.")
flags.DEFINE_integer("items", 1000, "Synthetic items.")
flags.DEFINE_integer("per_user", 20, "Behaviours per user at 1x.")
flags.DEFINE_integer("scale", 10, "The larger data set has this many times the behaviours per user.")
flags.DEFINE_integer("history_length", 50, "History length of the examples.")
flags.DEFINE_string("benchmarks_md", str(ROOT / "BENCHMARKS.md"), "Markdown file receiving the table.")
FLAGS = flags.FLAGS

TRAIN_FLAGS = ("--encoder=tiny", "--embedding_dim=32", "--sequence_length=16", "--history_layers=1",
               "--history_heads=2", "--epochs=1", "--batch_size=256", "--eval_ks=10,100", "--verbose=0")


def measured(args, log):
    """Runs `python -m args` to completion, output to the file `log`; returns (seconds, peak RSS in MiB)."""
    started = time.perf_counter()
    with open(log, "w") as output:
        process = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code:
        with open(log) as output:
            raise RuntimeError(f"{' '.join(args)} failed ({code}):\n{output.read()[-3000:]}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def run(work):
    rows = []
    for scale in (1, FLAGS.scale):
        source = (f"synthetic:users={FLAGS.users},items={FLAGS.items},per_user={FLAGS.per_user * scale},seed=0")
        converted = os.path.join(work, f"x{scale}")
        seconds, peak = measured(["tfrec.data", "convert", f"--source={source}", f"--output_dir={converted}",
                                  f"--history_length={FLAGS.history_length}", "--num_shards=4"], f"{converted}.log")
        rows.append({"scale": scale, "input": "convert", "seconds": seconds, "peak": peak, "source": source})
        for name, train_source in (("tfrecord: (streamed)", f"tfrecord:{converted}"), ("in memory", source)):
            run_dir = os.path.join(work, f"run-x{scale}-{len(rows)}")
            seconds, peak = measured(["tfrec.train", f"--source={train_source}", f"--run_dir={run_dir}",
                                      f"--history_length={FLAGS.history_length}", *TRAIN_FLAGS], f"{run_dir}.log")
            rows.append({"scale": scale, "input": name, "seconds": seconds, "peak": peak, "source": source})
            print(rows[-1], flush=True)
    return rows


def table(rows):
    base = {r["input"]: r["peak"] for r in rows if r["scale"] == 1}
    lines = ["| data | behaviours | run | wall time (s) | peak RSS (MiB) | peak / peak at 1x |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        behaviours = FLAGS.users * FLAGS.per_user * r["scale"]
        lines.append(f"| {r['scale']}x | {behaviours:,} | {r['input']} | {r['seconds']:.0f} | {r['peak']:.0f} | "
                     f"{r['peak'] / base[r['input']]:.2f} |")
    streamed = [r["peak"] for r in rows if r["input"].startswith("tfrecord")]
    ratio = streamed[-1] / streamed[0]
    verdict = (f"Streamed peak at {FLAGS.scale}x / at 1x: {ratio:.2f} (goal: at most {GOAL}): "
               f"{'met' if ratio <= GOAL else 'missed'}.")
    return "\n".join(lines), verdict


def main(argv):
    del argv
    with tempfile.TemporaryDirectory(prefix="bench_streaming-") as work:
        rows = run(work)
    body, verdict = table(rows)
    command = "scripts/bench_streaming.py " + " ".join(
        f"--{name}={getattr(FLAGS, name)}" for name in ("users", "items", "per_user", "scale", "history_length"))
    section = (
        "## Streamed training input (`scripts/bench_streaming.py`)\n\n"
        f"Synthetic logs of {FLAGS.users:,} users and {FLAGS.items:,} items at 1x and {FLAGS.scale}x the behaviours "
        "per user (the held-out examples stay the same; the training examples grow), converted with "
        "`python -m tfrec.data convert`, then one epoch of a tiny model in a fresh process from the converted "
        "files (`--source=tfrecord:DIR`) and from the source in memory. Peak RSS is the process's maximum "
        "resident set (wait4 rusage).\n\n"
        f"{body}\n\n{verdict}\n\n"
        f"Command: `{command}`\n\nMachine: {benchlib.machine()}\n")
    print(section)
    benchlib.write_section(FLAGS.benchmarks_md, "bench_streaming", section)


if __name__ == "__main__":
    app.run(main)
