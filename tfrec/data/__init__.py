"""tfrec.data: load behaviour logs and item text, validate, split, build examples.

Example:

>>> from tfrec import data
>>> ds = data.load("synthetic:users=50,items=80,per_user=12")
>>> sp = data.split_interactions(ds, "leave_last_out")
>>> vocab = data.Vocabulary.from_data(ds)
>>> examples = data.build_examples(ds, sp, vocab, history_length=10)
>>> sorted(examples), examples["test"]["history_item_ids"].shape
(['test', 'train', 'valid'], (50, 10))
"""

from tfrec.data.dataset import InteractionData, RawTable, assemble
from tfrec.data.errors import (
    DataError,
    DuplicateIdError,
    EmptyDataError,
    EmptyTextError,
    FieldTypeError,
    MalformedRowError,
    MissingColumnError,
    MissingValueError,
    RatingRangeError,
    SourceError,
    TimestampError,
    UndecodableTextError,
    UnknownColumnError,
    UnknownItemError,
    UnknownUserError,
)
from tfrec.data.examples import FEATURES, build_examples, iter_examples
from tfrec.data.texts import item_text, item_texts
from tfrec.data.sources import load
from tfrec.data.splits import SPLITS, Split, split_interactions
from tfrec.data.table import ColumnMap
from tfrec.data.vocabulary import Vocabulary


def to_tf_dataset(examples, **kwargs):
    """See `tfrec.data.pipeline.to_tf_dataset` (imports TensorFlow on first use)."""
    from tfrec.data import pipeline

    return pipeline.to_tf_dataset(examples, **kwargs)
