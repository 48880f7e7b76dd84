"""What adapting the text encoder to the logs costs per catalogue pass, on a real catalogue.

Times, in one process, forward plus backward over every item text of the
catalogue (MiniLM, `--sequence_length` tokens, `--batch_size` texts a batch,
eager as training's first steps, after one warm-up batch; the lower layers'
states cached as training caches them):

- a decoupled encoder update (GradCache): the loss's gradient with respect to
  every item vector, gathered over many steps, back-propagated once through
  MiniLM's top layer (`--encoder_trainable=top:1`), i.e. one catalogue pass;
- the same top layer per training step as `top:1` trains it today: the 256
  items a step re-encodes (`--text_refresh_items`), forward plus backward.

The upstream gradient is a fixed random one: the cost does not depend on it.
Prints a table and writes it into BENCHMARKS.md (section `bench_fine_tuning_cost`).

    nice python scripts/bench_fine_tuning_cost.py --dataset=office
"""

import os
import pathlib
import sys
import time

import numpy as np
from absl import app, flags

import benchlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tensorflow as tf  # noqa: E402

from tfrec import data  # noqa: E402
from tfrec.text_encoder import TextEncoder  # noqa: E402

SOURCES = {
    "ml100k": ("MovieLens-100K", "movielens:{shared}/ml-100k", {}),
    "office": ("Amazon Office", "table:interactions={shared}/amazon-office/interactions.csv,"
               "items={shared}/amazon-office/items.csv",
               {"time_col": "position", "text_cols": ["title", "brand", "categories", "description"]}),
}
STEP_ITEMS = 256  # items a `top:1` training step re-encodes (ModelConfig.text_refresh_items)

flags.DEFINE_enum("dataset", "office", list(SOURCES), "Catalogue whose texts are encoded.")
flags.DEFINE_string("shared_dir", str(ROOT.parent / "shared" / "data"), "Folder holding ml-100k/ and amazon-office/.")
flags.DEFINE_integer("sequence_length", 128, "Tokens per text.")
flags.DEFINE_integer("batch_size", 128, "Texts per forward/backward batch.")
flags.DEFINE_string("benchmarks_file", str(ROOT / "BENCHMARKS.md"), "Markdown file whose section is written.")
FLAGS = flags.FLAGS


def pass_seconds(encoder: TextEncoder, hidden: np.ndarray, mask: np.ndarray, rows: np.ndarray) -> float:
    """Seconds of forward plus backward of `encoder.encode_upper` over `rows`, `batch_size` at a time."""
    weights = encoder.trainable_weights
    upstream = tf.constant(np.random.default_rng(0).normal(size=(FLAGS.batch_size, encoder.hidden_dim)), tf.float32)
    _forward_backward(encoder, hidden, mask, rows[:FLAGS.batch_size], weights, upstream)  # warm-up
    start = time.perf_counter()
    _forward_backward(encoder, hidden, mask, rows, weights, upstream)
    return time.perf_counter() - start


def _forward_backward(encoder, hidden, mask, rows, weights, upstream) -> None:
    """Forward plus backward of `encoder.encode_upper` over `rows`, `batch_size` at a time."""
    for begin in range(0, len(rows), FLAGS.batch_size):
        batch = rows[begin:begin + FLAGS.batch_size]
        length = max(int(mask[batch].sum(axis=1).max()), 1)
        with tf.GradientTape() as tape:
            vectors = encoder.encode_upper(tf.constant(hidden[batch, :length]), tf.constant(mask[batch, :length]),
                                           training=True)
            loss = tf.reduce_sum(vectors * upstream[:len(batch)])
        gradients = tape.gradient(loss, weights)
        if any(gradient is None for gradient in gradients):
            raise RuntimeError("a trainable weight got no gradient: the pass did not reach it")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    name, source, columns = SOURCES[FLAGS.dataset]
    prepared = data.prepare(data.DataConfig(source=source.format(shared=FLAGS.shared_dir), **columns))
    texts = prepared.item_texts[1:]
    rows = np.arange(len(texts))
    step_rows = np.random.default_rng(0).choice(rows, min(STEP_ITEMS, len(rows)), replace=False)
    measured = []
    top = TextEncoder("minilm", sequence_length=FLAGS.sequence_length, trainable="top:1")
    hidden, mask = top.cached_lower_states(texts, FLAGS.batch_size)
    measured.append(("decoupled update: MiniLM's top layer (`top:1`), whole catalogue once",
                     len(rows), pass_seconds(top, hidden, mask, rows)))
    measured.append((f"`top:1` as it trains per step: the {len(step_rows)} items one step re-encodes",
                     len(step_rows), pass_seconds(top, hidden, mask, step_rows)))
    lines = ["| forward + backward | seconds | texts/s |", "|---|---:|---:|"]
    for label, count, seconds in measured:
        lines.append(f"| {label} | {seconds:.1f} | {count / seconds:,.1f} |")
    ratio = measured[0][2] / measured[1][2]
    given = [arg for arg in sys.argv[1:] if not arg.startswith("--benchmarks_file")]
    command = " ".join(["nice python scripts/bench_fine_tuning_cost.py", *given])
    body = "\n".join([
        "## What adapting the text encoder costs (`scripts/bench_fine_tuning_cost.py`)", "",
        f"Command: `{command}`  ",
        f"Machine: {benchlib.machine()}, measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
        f"Texts: the {len(texts):,} {name} item texts, MiniLM, {FLAGS.sequence_length} tokens, batches of "
        f"{FLAGS.batch_size}; the lower layers' states cached beforehand as training caches them; one process.", "",
        *lines, "",
        f"- One decoupled pass through the top layer costs as much as {ratio:.1f} steps of `top:1` training.",
    ])
    print(body)
    benchlib.write_section(FLAGS.benchmarks_file, "bench_fine_tuning_cost", body)


if __name__ == "__main__":
    app.run(main)
