"""Data flags, shared by every CLI that reads data, and `from_flags()`.

Importing this module defines the flags once; the train, evaluate and data
CLIs import it.

Example:

    python -m tfrec.data describe --source=table:interactions=logs.csv,items=items.csv \\
        --user_col=customer --item_col=sku --time_col=ts --time_format=iso
"""

import os

from absl import flags

from tfrec.data import errors, examples, sources, splits, table, vocabulary
from tfrec.data.dataset import TIME_FORMATS_HELP

DATA_DIR_ENV = "TFREC_DATA_DIR"
NO_DATA_MESSAGE = (
    "no data given: pass --source=movielens:DIR (an unpacked MovieLens 100K/1M/latest-small "
    f"directory), set {DATA_DIR_ENV}=DIR to use movielens:DIR by default, or use --source=tfds:movielens/100k "
    "on a machine with internet (or --source=table:... for your own files, --source=synthetic: for generated data)"
)

flags.DEFINE_string(
    "source",
    None,
    "Data source: movielens:DIR, tfds:NAME, table:interactions=FILE,items=FILE[,users=FILE] or "
    f"synthetic:users=200,items=300,per_user=30,seed=0. Default: movielens:${DATA_DIR_ENV} when set.",
)
flags.DEFINE_enum("split", "leave_last_out", splits.SPLITS, "How interactions are split into train/valid/test.")
flags.DEFINE_list("split_fractions", ["0.8", "0.1", "0.1"], "train,valid,test shares for the temporal and random splits.")
flags.DEFINE_integer("split_seed", 0, "Seed of the random and cold_items splits.")
flags.DEFINE_float("cold_fraction", 0.1, "Share of items held out of training by the cold_items split.")
flags.DEFINE_integer("history_length", 50, "Number of past behaviours in each example's history.")
flags.DEFINE_enum(
    "on_bad_rows", "error", errors.ON_BAD_ROWS, "error: stop at the first bad row; skip: skip bad rows and report counts."
)
flags.DEFINE_string("user_col", table.ColumnMap.user, "table source: column holding the user id.")
flags.DEFINE_string("item_col", table.ColumnMap.item, "table source: column holding the item id (both files).")
flags.DEFINE_string("time_col", table.ColumnMap.time, "table source: column holding the time of the interaction.")
flags.DEFINE_string("rating_col", table.ColumnMap.rating, "table source: column holding the rating (optional).")
flags.DEFINE_string("event_col", table.ColumnMap.event, "table source: column holding the event type (optional).")
flags.DEFINE_string("title_col", table.ColumnMap.title, "table source: item column holding the title.")
flags.DEFINE_string("description_col", table.ColumnMap.description, "table source: item column holding the description.")
flags.DEFINE_string("genres_col", table.ColumnMap.genres, "table source: item column holding genres/tags.")
flags.DEFINE_string("genres_separator", "|", "table source: separator between tags in the genres column.")
flags.DEFINE_string("time_format", "unix", f"table source: format of the time column: {TIME_FORMATS_HELP}.")
flags.DEFINE_list("rating_range", None, "table source: low,high bounds of valid ratings (default: any finite number).")
flags.DEFINE_string("delimiter", None, "table source: CSV/TSV field delimiter (default: from the file extension).")

FLAGS = flags.FLAGS


def resolve_source(source):
    """`source`, else movielens:$TFREC_DATA_DIR, else raises `SourceError` saying how to give data."""
    if source:
        return source
    if os.environ.get(DATA_DIR_ENV):
        return f"movielens:{os.environ[DATA_DIR_ENV]}"
    raise errors.SourceError(NO_DATA_MESSAGE)


def load_from_flags():
    """Loads the `InteractionData` selected by the data flags."""
    rating_range = tuple(float(x) for x in FLAGS.rating_range) if FLAGS.rating_range else None
    columns = table.ColumnMap(
        user=FLAGS.user_col,
        item=FLAGS.item_col,
        time=FLAGS.time_col,
        rating=FLAGS.rating_col,
        event=FLAGS.event_col,
        title=FLAGS.title_col,
        description=FLAGS.description_col,
        genres=FLAGS.genres_col,
    )
    return sources.load(
        resolve_source(FLAGS.source),
        on_bad_rows=FLAGS.on_bad_rows,
        columns=columns,
        delimiter=FLAGS.delimiter,
        rating_range=rating_range,
        time_format=FLAGS.time_format,
        genres_separator=FLAGS.genres_separator,
    )


def split_from_flags(ds):
    """Splits `ds` as the split flags say."""
    return splits.split_interactions(
        ds,
        FLAGS.split,
        fractions=[float(x) for x in FLAGS.split_fractions],
        seed=FLAGS.split_seed,
        cold_fraction=FLAGS.cold_fraction,
    )


def from_flags():
    """Loads, splits and builds examples as the flags say.

    Returns:
        (ds, split, vocab, examples): `InteractionData`, `Split`, `Vocabulary`,
        and the `build_examples` dict.
    """
    ds = load_from_flags()
    split = split_from_flags(ds)
    vocab = vocabulary.Vocabulary.from_data(ds)
    return ds, split, vocab, examples.build_examples(ds, split, vocab, FLAGS.history_length)
