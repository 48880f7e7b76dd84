"""Benchmark: building the MovieLens-100K training pipeline, and tf.data throughput.

Times each stage of the data layer (load, split, examples with history length
N, tf.data construction and the first, cache-filling epoch), then the
steady-state throughput of the cached pipeline in examples/s, and the rates of
writing the training examples as sharded TFRecords and reading them back. Prints a table and
writes it into BENCHMARKS.md between `<!-- bench_data -->` markers (replacing
an earlier run's section, leaving other sections alone).

    nice -n 10 python scripts/bench_data.py [--source=movielens:DIR] [--history_length=50]
"""

import os
import pathlib
import sys
import tempfile
import time

import benchlib
from absl import app, flags

import tensorflow as tf  # noqa: F401 (imported up front: no timed stage includes the import)

from tfrec import config_flags, data
from tfrec.data import prepared, tfrecord

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD_GOAL_S, THROUGHPUT_GOAL = 10.0, 50_000

flags.DEFINE_integer("batch_size", 256, "Batch size of the tf.data pipeline.")
flags.DEFINE_integer("epochs", 3, "Epochs timed after the cache-filling one.")
flags.DEFINE_integer("num_shards", 4, "TFRecord files written for the training split.")
flags.DEFINE_string("benchmarks_file", str(ROOT / "BENCHMARKS.md"), "Markdown file whose bench_data section is written.")
config_flags.define_flags(data.DataConfig)
FLAGS = flags.FLAGS


def default_source():
    directory = os.environ.get(prepared.DATA_DIR_ENV) or ROOT.parent / "shared" / "data" / "ml-100k"
    return f"movielens:{directory}"


def timed(stages, name, function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    stages.append((name, time.perf_counter() - start))
    return result


def count_epoch(dataset):
    return sum(int(batch[data.schema.LABEL].shape[0]) for batch in dataset)


def run():
    stages = []
    config = config_flags.from_flags(data.DataConfig, FLAGS)
    ds = timed(stages, "load", config.load_tables)
    split = timed(stages, "split", config.split_tables, ds)
    vocab = data.Vocabulary.from_data(ds)
    examples = timed(stages, "examples", data.build_examples, ds, split, vocab, FLAGS.history_length)
    dataset = timed(stages, "tf.data (build)", data.to_tf_dataset, examples["train"], batch_size=FLAGS.batch_size)
    n = timed(stages, "tf.data (first epoch, fills cache)", count_epoch, dataset)
    start = time.perf_counter()
    total = sum(count_epoch(dataset) for _ in range(FLAGS.epochs))
    throughput = {"tf.data, cached": total / (time.perf_counter() - start)}
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        chunks = {"train": data.iter_examples(ds, split, vocab, FLAGS.history_length, "train")}
        tfrecord.write_tfrecords(chunks, split.sizes(), f"{directory}/records", FLAGS.num_shards, FLAGS.history_length)
        throughput[f"TFRecord write ({FLAGS.num_shards} shards)"] = n / (time.perf_counter() - start)
        start = time.perf_counter()
        count_epoch(tfrecord.read_tfrecords(f"{directory}/records", "train").batch(FLAGS.batch_size))
        throughput["TFRecord read and parse"] = n / (time.perf_counter() - start)
    return ds, split, n, stages, throughput


def table(ds, split, n, stages, throughput):
    build = sum(seconds for _, seconds in stages)
    sizes = split.sizes()
    lines = [
        f"Data: `{ds.name}`, split `{split.name}` (train {sizes['train']:,} / valid {sizes['valid']:,} / "
        f"test {sizes['test']:,}), history length {FLAGS.history_length}, batch size {FLAGS.batch_size}; "
        f"{n:,} training examples per epoch.",
        "",
        "| stage | seconds |",
        "|---|---|",
        *(f"| {name} | {seconds:.3f} |" for name, seconds in stages),
        f"| **total build** (goal < {BUILD_GOAL_S:g} s) | **{build:.3f}** |",
        "",
        "| throughput | examples/s |",
        "|---|---|",
        f"| tf.data steady state (cached), mean over {FLAGS.epochs} epochs (goal > {THROUGHPUT_GOAL:,}) "
        f"| **{throughput.pop('tf.data, cached'):,.0f}** |",
        *(f"| {name} | {rate:,.0f} |" for name, rate in throughput.items()),
    ]
    return "\n".join(lines)


def write_section(path, body):
    """Replaces (or appends) the bench_data section of `path`, atomically."""
    command = "nice -n 10 python scripts/bench_data.py " + " ".join(sys.argv[1:])
    measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    benchlib.write_section(
        path,
        "bench_data",
        f"## Data pipeline (MovieLens-100K)\n\n`{command.strip()}`\n\n"
        f"Machine: {benchlib.machine()}, measured {measured}.\n\n{body}",
    )


def main(argv):
    del argv
    if not FLAGS.source:
        FLAGS.source = default_source()
    body = table(*run())
    print(body)
    write_section(FLAGS.benchmarks_file, body)
    print(f"\nwritten to {FLAGS.benchmarks_file}")


if __name__ == "__main__":
    app.run(main)
