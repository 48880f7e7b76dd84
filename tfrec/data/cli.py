"""`python -m tfrec.data describe|convert`: inspect a data source or write it as TFRecords.

    python -m tfrec.data describe --source=movielens:../shared/data/ml-100k --split=leave_last_out --format=json
    python -m tfrec.data convert --source=... --split=... --output_dir=DIR --num_shards=8

Bad data stops with the `DataError` message (file, row, field, expectation)
and exit status 2.
"""

import json
import sys

from absl import app, flags

from tfrec.data import errors, examples, summary, texts, vocabulary
from tfrec.data import flags as data_flags

COMMANDS = ("describe", "convert")

flags.DEFINE_enum("format", "text", ["text", "json"], "describe: output format.")
flags.DEFINE_string("output_dir", None, "convert: directory to write the TFRecord shards to (replaced atomically).")
flags.DEFINE_integer("num_shards", 4, "convert: TFRecord files per split.")
flags.DEFINE_integer("chunk_size", 65536, "convert: examples built and written at a time (bounds memory).")

FLAGS = flags.FLAGS


def describe():
    """Prints the statistics of the data selected by the flags."""
    ds, split, _, built = data_flags.from_flags()
    stats = summary.describe(ds, split, built)
    print(json.dumps(stats, indent=2) if FLAGS.format == "json" else summary.format_text(stats))


def convert():
    """Writes the examples of every split as sharded TFRecords, plus the vocabulary."""
    if not FLAGS.output_dir:
        raise app.UsageError("convert needs --output_dir")
    from tfrec.data import tfrecord  # TensorFlow is only needed here

    ds = data_flags.load_from_flags()
    split = data_flags.split_from_flags(ds)
    vocab = vocabulary.Vocabulary.from_data(ds)
    chunks = {
        name: examples.iter_examples(ds, split, vocab, FLAGS.history_length, name, FLAGS.chunk_size)
        for name in ("train", "valid", "test")
    }
    metadata = tfrecord.write_tfrecords(
        chunks,
        split.sizes(),
        FLAGS.output_dir,
        FLAGS.num_shards,
        FLAGS.history_length,
        vocab=vocab,
        item_texts=texts.item_texts(ds.items, vocab),
        extra={"source": ds.name, "split": split.name, "skipped": ds.skipped},
    )
    sizes = ", ".join(f"{name} {info['examples']:,}" for name, info in metadata["splits"].items())
    print(f"wrote {sizes} examples in {FLAGS.num_shards} shards per split to {FLAGS.output_dir}")


def main(argv):
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"usage: python -m tfrec.data {{{'|'.join(COMMANDS)}}} --source=... [flags]")
    try:
        {"describe": describe, "convert": convert}[argv[1]]()
    except errors.DataError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
