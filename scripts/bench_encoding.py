"""Benchmark: encoding a catalogue's item texts, before and after the text vector cache.

Times, in one process on the real MovieLens-100K texts, with the encoder and
sequence length of `configs/ml100k_retrieval.flags` (MiniLM, 128 tokens):

- before: the texts in catalogue order, every batch padded to the longest text
  (what `ItemTower` did before length sorting);
- first build: `TextEncoder.cached_vectors` on an empty cache: length-sorted
  batches each cut to its longest text, plus fingerprint and storing;
- second build: the same call again, every vector read from the cache;
- second run's setup: a new `ItemTower` (encoder loaded, fingerprint, cache
  read, standardisation), as a second training run builds it.

Prints a table and writes it into BENCHMARKS.md between `<!-- bench_encoding -->`
markers. The cache lives in a temporary directory, removed at the end.

    nice -n 10 python scripts/bench_encoding.py [--data_dir=DIR] [--sequence_length=128]
"""

import os
import pathlib
import shutil
import sys
import tempfile
import time

import benchlib
import numpy as np
from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
SPEEDUP_GOAL, CACHED_FRACTION_GOAL = 1.5, 0.1

flags.DEFINE_string("data_dir", None,
                    "MovieLens-100K directory (default: $TFREC_DATA_DIR, else ../shared/data/ml-100k).")
flags.DEFINE_string("encoder", "minilm", "Encoder source (see `TextEncoder`).")
flags.DEFINE_integer("sequence_length", 128, "Tokens per text (configs/ml100k_retrieval.flags reads 128).")
flags.DEFINE_integer("batch_size", 128, "Texts per batch (`ItemTower.ENCODE_BATCH`).")
flags.DEFINE_string("benchmarks_file", str(ROOT / "BENCHMARKS.md"), "Markdown file whose section is written.")
FLAGS = flags.FLAGS


def timed(function, *args, **kwargs):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def run(texts):
    """The measured rows: (name, seconds, vectors or None)."""
    from tfrec.models.item_tower import ItemTower
    from tfrec.text_encoder import TextEncoder

    encoder = TextEncoder(FLAGS.encoder, sequence_length=FLAGS.sequence_length)
    encoder.encode_in_batches(texts[:FLAGS.batch_size], FLAGS.batch_size)  # builds and warms up
    before, before_s = timed(encoder.encode_in_batches, texts, FLAGS.batch_size, sort_by_length=False)
    first, first_s = timed(encoder.cached_vectors, texts, FLAGS.batch_size)
    second, second_s = timed(encoder.cached_vectors, texts, FLAGS.batch_size)
    np.testing.assert_allclose(first, before, atol=1e-4)
    np.testing.assert_array_equal(second, first)
    tower = ItemTower(texts, encoder={"source": FLAGS.encoder, "sequence_length": FLAGS.sequence_length})
    _, setup_s = timed(tower.build)
    if tower.text_encoder.encoded_texts:
        raise RuntimeError(f"the second run's ItemTower encoded {tower.text_encoder.encoded_texts} texts; expected 0")
    return before_s, first_s, second_s, setup_s


def table(count, before_s, first_s, second_s, setup_s):
    """Markdown lines of the measurements and the verdicts on the issue's goals."""
    rows = [
        ("before: catalogue order, every batch padded to the longest text", before_s),
        ("first build: length-sorted, each batch cut to its longest text (+ fingerprint, store)", first_s),
        ("second build: every vector from the cache (fingerprint, read)", second_s),
        ("second run's setup: new `ItemTower` built (encoder load, fingerprint, read, standardisation)", setup_s),
    ]
    speedup, fraction = before_s / first_s, setup_s / first_s
    return [
        "| encoding | seconds | texts/s |",
        "|---|---:|---:|",
        *[f"| {name} | {seconds:.2f} | {count / seconds:,.1f} |" for name, seconds in rows],
        "",
        f"- first-time encoding: {speedup:.2f}x faster than before (goal >= {SPEEDUP_GOAL}x: "
        f"{'met' if speedup >= SPEEDUP_GOAL else 'NOT met'}).",
        f"- second run's setup / first build's encoding: {fraction:.3f} (goal <= {CACHED_FRACTION_GOAL}: "
        f"{'met' if fraction <= CACHED_FRACTION_GOAL else 'NOT met'}).",
    ]


def main(argv):
    del argv
    from tfrec import data
    from tfrec.data.prepared import DATA_DIR_ENV

    directory = FLAGS.data_dir or os.environ.get(DATA_DIR_ENV) or ROOT.parent / "shared" / "data" / "ml-100k"
    texts = data.prepare(data.DataConfig(source=f"movielens:{directory}")).item_texts  # [0]: the padding row's ""
    cache_dir = tempfile.mkdtemp(prefix="bench_encoding-")
    os.environ["TFREC_CACHE_DIR"] = cache_dir
    os.environ.pop("TFREC_TEXT_CACHE", None)
    try:
        lines = table(len(texts), *run(texts))
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    command = " ".join(["nice -n 10 python scripts/bench_encoding.py", *sys.argv[1:]])
    body = "\n".join([
        "## Item text encoding and the text vector cache (`scripts/bench_encoding.py`)",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {benchlib.machine()}, measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
        f"Texts: the {len(texts) - 1:,} MovieLens-100K item texts and the padding row's empty one, encoder "
        f"`{FLAGS.encoder}`, sequence length {FLAGS.sequence_length}, batch {FLAGS.batch_size}; all timings from one process (same load).",
        "",
        *lines,
    ])
    print(body)
    benchlib.write_section(FLAGS.benchmarks_file, "bench_encoding", body)
    print(f"\nwritten to {FLAGS.benchmarks_file}")


if __name__ == "__main__":
    app.run(main)
