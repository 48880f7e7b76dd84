"""tf.data input pipelines over examples.

Example:

>>> from tfrec.data import examples, splits, synthetic, vocabulary
>>> ds = synthetic.generate(users=8, items=20, per_user=6)
>>> vocab = vocabulary.Vocabulary.from_data(ds)
>>> ex = examples.build_examples(ds, splits.split_interactions(ds), vocab, history_length=4)
>>> batch = next(iter(to_tf_dataset(ex["train"], batch_size=16, seed=0)))
>>> batch["history_item_ids"].shape.as_list(), batch["history_item_ids"].dtype.name
[16, 4], 'int32'
"""

import tensorflow as tf


def to_tf_dataset(
    examples,
    batch_size=256,
    shuffle=True,
    seed=0,
    cache=True,
    shuffle_buffer=None,
    drop_remainder=False,
):
    """Builds a batched, cached, prefetched `tf.data.Dataset` of examples.

    Args:
        examples: dict feature name -> np.ndarray (from `build_examples`), or an
            unbatched `tf.data.Dataset` of example dicts (e.g. `tfrecord.read_tfrecords`).
        batch_size: examples per batch.
        shuffle: reshuffle every epoch, seeded by `seed`.
        seed: shuffle seed.
        cache: True caches in memory, a str caches to that file path (for data
            larger than memory), False does not cache.
        shuffle_buffer: shuffle buffer size; default the number of examples for
            arrays, 65536 for a dataset.
        drop_remainder: drop the last partial batch.

    Returns:
        `tf.data.Dataset` of dicts of batched tensors (ids and padding int32).
    """
    if isinstance(examples, tf.data.Dataset):
        dataset = examples
        buffer = shuffle_buffer or 65536
    else:
        dataset = tf.data.Dataset.from_tensor_slices(dict(examples))
        buffer = shuffle_buffer or max(1, len(next(iter(examples.values()))))
    if cache:
        dataset = dataset.cache(cache if isinstance(cache, str) else "")
    if shuffle:
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
