"""`python -m tfrec.data describe|convert`: inspect a data source or write it as TFRecords.

    python -m tfrec.data describe --source=movielens:../shared/data/ml-100k --split=leave_last_out --format=json
    python -m tfrec.data convert --source=... --split=... --output_dir=DIR --num_shards=8

Bad data stops with the `DataError` message (file, row, field, expectation)
and exit status 2.
"""

import json
import sys

from absl import app, flags

from tfrec import config_flags
from tfrec.config import ConfigError
from tfrec.data import errors, examples, summary, texts, vocabulary
from tfrec.data.prepared import DataConfig, prepare

COMMANDS = ("describe", "convert")
FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the flags of `python -m tfrec.data` in `flag_values`."""
    config_flags.define_flags(DataConfig, flag_values)
    flags.DEFINE_enum("format", "text", ["text", "json"], "describe: output format.", flag_values=flag_values)
    flags.DEFINE_string("output_dir", None, "convert: directory to write the TFRecord shards to (missing or "
                        "empty, or with --overwrite an earlier conversion, replaced atomically).", flag_values=flag_values)
    flags.DEFINE_bool("overwrite", False, "convert: replace an earlier conversion in --output_dir (a directory "
                      "holding anything else is refused).", flag_values=flag_values)
    flags.DEFINE_integer("num_shards", 4, "convert: TFRecord files per split.", flag_values=flag_values)
    flags.DEFINE_integer("chunk_size", 65536, "convert: examples built and written at a time (bounds memory).",
                         flag_values=flag_values)


def describe(config, values):
    """Prints the statistics of the data `config` selects."""
    prepared = prepare(config)
    stats = summary.describe(prepared.tables, prepared.split, prepared.examples)
    print(json.dumps(stats, indent=2) if values.format == "json" else summary.format_text(stats))


def convert(config, values):
    """Writes the examples of every split as sharded TFRecords, plus the vocabulary."""
    if not values.output_dir:
        raise app.UsageError("convert needs --output_dir")
    from tfrec.data import tfrecord  # TensorFlow is only needed here

    tfrecord.check_output_dir(values.output_dir, values.overwrite)  # before the data is read
    ds = config.load_tables()
    split = config.split_tables(ds)
    vocab = vocabulary.Vocabulary.from_data(ds)
    chunks = {
        name: examples.iter_examples(ds, split, vocab, config.history_length, name, values.chunk_size)
        for name in ("train", "valid", "test")
    }
    metadata = tfrecord.write_tfrecords(
        chunks,
        split.sizes(),
        values.output_dir,
        values.num_shards,
        config.history_length,
        vocab=vocab,
        item_texts=texts.item_texts(ds.items, vocab),
        extra={"source": ds.name, "split": split.name, "skipped": ds.skipped},
        overwrite=values.overwrite,
    )
    sizes = ", ".join(f"{name} {info['examples']:,}" for name, info in metadata["splits"].items())
    print(f"wrote {sizes} examples in {values.num_shards} shards per split to {values.output_dir}")


def main(argv):
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"usage: python -m tfrec.data {{{'|'.join(COMMANDS)}}} --source=... [flags]")
    try:
        config = config_flags.from_flags(DataConfig, FLAGS)
        {"describe": describe, "convert": convert}[argv[1]](config, FLAGS)
    except (errors.DataError, ConfigError) as error:
        print(f"error: {config_flags.flag_message(error)}", file=sys.stderr)
        sys.exit(2)
