"""`python -m tfrec.data describe|convert`: inspect a data source or write it as TFRecords.

    python -m tfrec.data describe --source=movielens:../shared/data/ml-100k --split=leave_last_out --format=json
    python -m tfrec.data convert --source=... --split=... --output_dir=DIR --num_shards=8

Bad data stops with the `DataError` message (file, row, field, expectation)
and exit status 2. `--help` lists the commands and their flags.
"""

import json
import sys

from absl import app, flags

from tfrec import quiet

quiet.configure(__name__)  # before TensorFlow is imported (by convert)
from tfrec import config_flags  # noqa: E402
from tfrec.config import ConfigError  # noqa: E402
from tfrec.data import errors, examples, summary, texts, vocabulary  # noqa: E402
from tfrec.data.prepared import (  # noqa: E402
    DataConfig,
    interaction_counts,
    prepare,
    tables_fingerprint,
    training_rating_mean,
)

FLAGS = flags.FLAGS


def _describe_flags(flag_values):
    flags.DEFINE_enum("format", "text", ["text", "json"], "describe: output format.", flag_values=flag_values)


def _convert_flags(flag_values):
    flags.DEFINE_string("output_dir", None, "convert: directory to write the TFRecord shards to (missing or "
                        "empty, or with --overwrite an earlier conversion, replaced atomically).", flag_values=flag_values)
    flags.DEFINE_bool("overwrite", False, "convert: replace an earlier conversion in --output_dir (a directory "
                      "holding anything else is refused).", flag_values=flag_values)
    flags.DEFINE_integer("num_shards", 4, "convert: TFRecord files per split.", flag_values=flag_values)
    flags.DEFINE_integer("chunk_size", 65536, "convert: examples built and written at a time (bounds memory).",
                         flag_values=flag_values)
    flags.DEFINE_integer("shuffle_seed", 0, "convert: the training examples are written in the random order this "
                         "seed draws, so that any stretch of the files (a shuffle buffer) mixes every user; -1: in "
                         "(user, time) order.", lower_bound=-1, flag_values=flag_values)


def describe(config, values):
    """Prints the statistics of the data: sizes, per-user counts, text coverage, split, history lengths."""
    prepared = prepare(config, tables=config.load_tables())  # tables: a tfrecord: source is refused by its loader
    stats = summary.describe(prepared.tables, prepared.split, prepared.examples)
    print(json.dumps(stats, indent=2) if values.format == "json" else summary.format_text(stats))


def convert(config, values):
    """Writes the examples of every split as sharded TFRecord files, plus what a `tfrecord:` source
    reads beside them: the vocabulary, item texts, held-out prior items and the data's facts."""
    if not values.output_dir:
        raise app.UsageError("convert needs --output_dir")
    from tfrec.data import tfrecord  # TensorFlow is only needed here

    if not config.target_rule().selects_all:
        raise app.UsageError("convert writes the examples of every behaviour: --target_events and "
                             "--target_min_rating apply to table sources read directly")
    tfrecord.check_output_dir(values.output_dir, values.overwrite)  # before the data is read
    ds = config.load_tables()
    split = config.split_tables(ds)
    vocab = vocabulary.Vocabulary.from_data(ds)
    order = None if values.shuffle_seed < 0 else values.shuffle_seed
    chunks = {"train": examples.iter_examples(ds, split, vocab, config.history_length, "train", values.chunk_size,
                                              row_features=True, shuffle_seed=order)}
    prior = {}
    for name in ("valid", "test"):  # held out: evaluated in memory, with the items each user met before
        held_out = next(examples.iter_examples(ds, split, vocab, config.history_length, name, None))
        chunks[name] = [held_out]
        prior[name] = examples.prior_items(split, vocab, name, held_out)
    facts = {"source": ds.name, "split": split.name, "skipped": ds.skipped, "fingerprint": tables_fingerprint(ds),
             "data_config": config.with_absolute_source().to_dict(),
             "train_order": "user" if order is None else f"shuffled, seed {order}",
             "has_ratings": ds.has_ratings, "rating_mean": training_rating_mean(ds, split),
             "interactions": interaction_counts(ds, split)}
    metadata = tfrecord.write_tfrecords(
        chunks,
        split.sizes(),
        values.output_dir,
        values.num_shards,
        config.history_length,
        vocab=vocab,
        item_texts=texts.item_texts(ds.items, vocab),
        item_titles=texts.item_titles(ds.items, vocab),
        extra=facts,
        overwrite=values.overwrite,
        prior=prior,
    )
    sizes = ", ".join(f"{name} {info['examples']:,}" for name, info in metadata["splits"].items())
    print(f"wrote {sizes} examples in {values.num_shards} shards per split to {values.output_dir}; "
          f"train from them with --source=tfrecord:{values.output_dir}")


COMMANDS = {"describe": (describe, _describe_flags), "convert": (convert, _convert_flags)}
"""Each command: (function run on the DataConfig and the flags, definer of its own flags)."""


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> dict:
    """Defines the flags of `python -m tfrec.data` in `flag_values`; returns {command: names of its own flags}."""
    config_flags.define_flags(DataConfig, flag_values)
    return {command: config_flags.defined(define, flag_values) for command, (_, define) in COMMANDS.items()}


def main(argv):
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"usage: python -m tfrec.data {{{'|'.join(COMMANDS)}}} --source=... [flags]")
    try:
        config = config_flags.from_flags(DataConfig, FLAGS)
        COMMANDS[argv[1]][0](config, FLAGS)
    except (errors.DataError, ConfigError) as error:
        print(f"error: {config_flags.flag_message(error)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    names = define_flags(FLAGS)
    commands = "\n".join(f"  {command:<10}{function.__doc__.splitlines()[0]}"
                         for command, (function, _) in COMMANDS.items())
    groups = [(f"{command} flags", names[command]) for command in COMMANDS]
    config_flags.run(main, groups + config_flags.config_groups((DataConfig,)),
                     doc=f"{__doc__.strip()}\n\ncommands:\n{commands}", arguments=True)
