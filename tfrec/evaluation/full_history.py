"""Examples whose histories hold every earlier interaction, for exact exclusion.

`data.build_examples` truncates histories to `history_length` behaviours;
the evaluation protocol excludes *every* item the user met before the target,
and count-based baselines (item-kNN) use the whole history. This builds the
valid and test examples with a history as long as the longest user sequence
(so no row is truncated) and the train examples with targets only.

Example:

>>> from tfrec import data
>>> from tfrec.data import synthetic
>>> ds = synthetic.generate(users=4, items=20, per_user=6)
>>> parts = full_history_examples(ds, data.split_interactions(ds), data.Vocabulary.from_data(ds))
>>> bool(parts["test"]["history_item_ids"].shape[1] == ds.interactions.groupby("user_id").size().max())
True
"""

from tfrec import data
from tfrec.data import schema


def full_history_examples(ds, split, vocab):
    """{"train", "valid", "test"} -> schema feature arrays.

    Args:
      ds: `data.InteractionData`.
      split: `data.Split` of `ds`.
      vocab: `data.Vocabulary` of `ds`.

    Returns:
      dict: train examples with a history of length 1 (their target features
      are what fitting needs), valid and test examples with complete histories
      (length = the most interactions of any user, left-padded with 0).
    """
    longest = int(ds.interactions.groupby(schema.USER_ID).size().max())
    lengths = {"train": 1, "valid": longest, "test": longest}
    return {
        part: next(data.iter_examples(ds, split, vocab, length, part, chunk_size=None))
        for part, length in lengths.items()
    }
