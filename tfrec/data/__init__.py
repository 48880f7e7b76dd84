"""tfrec.data: load behaviour logs and item text, validate, split, build examples.

Example:

>>> from tfrec import data
>>> prepared = data.prepare(data.DataConfig(source="synthetic:users=50,items=80,per_user=12",
...                                         history_length=10))
>>> sorted(prepared.examples), prepared.examples["test"]["history_item_ids"].shape
(['test', 'train', 'valid'], (50, 10))

`from_dataframes(interactions, items)` does the same for pandas DataFrames;
`load`, `split_interactions`, `Vocabulary.from_data` and `build_examples` are
the steps `prepare` runs.
"""

from tfrec.data.dataframes import from_dataframes
from tfrec.data.dataset import InteractionData, RawTable, assemble, combine
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
from tfrec.data.texts import item_text, item_texts, item_titles
from tfrec.data.sources import load
from tfrec.data.splits import SPLITS, Split, split_interactions, window_split
from tfrec.data.prepared import DataConfig, PreparedData, prepare
from tfrec.data.table import ColumnMap
from tfrec.data.vocabulary import Vocabulary


def to_tf_dataset(examples, **kwargs):
    """See `tfrec.data.pipeline.to_tf_dataset` (imports TensorFlow on first use)."""
    from tfrec.data import pipeline

    return pipeline.to_tf_dataset(examples, **kwargs)
