"""Sharded TFRecord files of examples, for data larger than memory.

Layout of a written directory:

    metadata.json                          history length, features, example counts, files
    vocabulary.json                        the `Vocabulary` (when given)
    items.jsonl                            {"item_id", "text", "title"} per item, index order (when given)
    held_out_prior.npz                     items each held-out example's user met before (when given)
    train-00000-of-00004.tfrecord ...      `tf.train.Example`s, one per example

Shards hold contiguous runs of examples, so reading them back in order
returns the examples in the order written. A directory is written under a
temporary name and renamed when complete: a partial output never looks complete.

Example:

>>> write_tfrecords({"train": [chunk]}, {"train": 1000}, "out/", num_shards=2, history_length=50)  # doctest: +SKIP
>>> dataset = read_tfrecords("out/", "train")  # doctest: +SKIP
"""

import json
import os
import pathlib
import re
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from tfrec import file_modes
from tfrec.data import errors, schema
from tfrec.data.examples import FEATURES, ROW_FEATURES

METADATA_FILE = "metadata.json"
VOCABULARY_FILE = "vocabulary.json"
ITEMS_FILE = "items.jsonl"
PRIOR_FILE = "held_out_prior.npz"
ALL_FEATURES = {**FEATURES, **ROW_FEATURES}


SHARD_PATTERN = re.compile(r"^\w+-\d{5}-of-\d{5}\.tfrecord$")


def shard_name(split, shard, num_shards):
    return f"{split}-{shard:05d}-of-{num_shards:05d}.tfrecord"


def check_output_dir(output_dir, overwrite=False):
    """Raises `DataError` unless `write_tfrecords` may write `output_dir`.

    A missing or empty directory may be written. A non-empty one only with
    `overwrite`, and only if it holds nothing but an earlier conversion's files
    (its shards, metadata, vocabulary and items): nothing else is ever deleted.
    """
    output_dir = pathlib.Path(output_dir)
    if not output_dir.exists():
        return
    if not output_dir.is_dir():
        raise errors.DataError(f"output_dir={output_dir} is a file; expected a directory to write the shards to")
    entries = sorted(output_dir.iterdir())
    if not entries:
        return
    if not overwrite:
        raise errors.DataError(f"output_dir={output_dir} is not empty ({len(entries)} entries): pass --overwrite "
                               "(overwrite=True) to replace an earlier conversion there, or choose a new directory")
    own = {METADATA_FILE, VOCABULARY_FILE, ITEMS_FILE, PRIOR_FILE}
    foreign = [p.name for p in entries if not (p.is_file() and (p.name in own or SHARD_PATTERN.match(p.name)))]
    if foreign:
        raise errors.DataError(f"output_dir={output_dir} holds {foreign[0]!r}, which no conversion writes: "
                               "overwrite replaces only an earlier conversion; choose another directory")


class _Serializer:
    """Serialises examples as `tf.train.Example`s, one row at a time.

    One message is reused and its value lists refilled for each row, which is
    about five times faster than building a new message per row.
    """

    def __init__(self, features):
        self.example = tf.train.Example()
        self.values = {}
        for name in features:
            dtype = ALL_FEATURES[name][0]
            feature = self.example.features.feature[name]
            self.values[name] = feature.float_list.value if dtype == np.float32 else feature.int64_list.value

    def __call__(self, row):
        """`row`: feature name -> list of numbers. Returns the serialised bytes."""
        for name, values in row.items():
            target = self.values[name]
            del target[:]
            target.extend(values)
        return self.example.SerializeToString()


def write_tfrecords(
    chunks_by_split, counts, output_dir, num_shards, history_length, vocab=None, item_texts=None, extra=None,
    overwrite=False, prior=None, item_titles=None,
):
    """Writes examples as sharded TFRecords, atomically.

    Args:
        chunks_by_split: dict split name -> iterable of example dicts (feature
            name -> np.ndarray, see `examples.FEATURES`, optionally with
            `examples.ROW_FEATURES`), e.g. `examples.iter_examples`.
        output_dir: the directory to create; an existing non-empty one only
            with `overwrite` (see `check_output_dir`), then replaced atomically.
        num_shards: files per split (>= 1); examples go to shards in contiguous runs.
        history_length: N of the history features.
        counts: dict split name -> number of examples (places the contiguous
            runs while streaming; a mismatch raises `DataError`).
        vocab: optional `Vocabulary` saved next to the shards.
        item_texts: optional `item_texts(...)` list saved as items.jsonl (needs `vocab`).
        item_titles: optional `item_titles(...)` list saved beside the texts.
        extra: optional dict added to metadata.json (e.g. the source and split).
        overwrite: replace an earlier conversion in `output_dir`.
        prior: optional dict split name -> list of int arrays, the items each
            example's user met before its target (`examples.prior_items`).

    Returns:
        dict of the metadata written.
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    check_output_dir(output_dir, overwrite)
    output_dir = pathlib.Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    temp = pathlib.Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    file_modes.apply_umask(str(temp))
    try:
        metadata = {"history_length": history_length, "num_shards": num_shards, "splits": {}, **(extra or {})}
        for split, chunks in chunks_by_split.items():
            written, features = _write_split(chunks, temp, split, num_shards, counts[split])
            metadata["splits"][split] = {
                "examples": written,
                "features": features,
                "files": [shard_name(split, s, num_shards) for s in range(num_shards)],
            }
        (temp / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
        if vocab is not None:
            (temp / VOCABULARY_FILE).write_text(vocab.to_json())
        if item_texts is not None:
            titles = item_titles[1:] if item_titles is not None else [None] * len(item_texts[1:])
            lines = (json.dumps({"item_id": i, "text": t, **({"title": title} if title is not None else {})})
                     for i, t, title in zip(vocab.item_ids[1:], item_texts[1:], titles))
            (temp / ITEMS_FILE).write_text("".join(line + "\n" for line in lines))
        if prior is not None:
            np.savez(temp / PRIOR_FILE, **{f"{split}_{key}": value for split, rows in prior.items()
                                           for key, value in _ragged(rows).items()})
        if output_dir.exists():
            old = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
            output_dir.rename(old)
            temp.rename(output_dir)
            shutil.rmtree(old)
        else:
            temp.rename(output_dir)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return metadata


def _ragged(rows):
    lengths = np.asarray([len(row) for row in rows], np.int64)
    values = np.concatenate(rows).astype(np.int32) if rows else np.zeros(0, np.int32)
    return {"values": values, "offsets": np.r_[0, np.cumsum(lengths)]}


def read_prior(directory, split):
    """The `prior` of `split` given to `write_tfrecords`: a list of int32 arrays, one per example."""
    path = pathlib.Path(directory) / PRIOR_FILE
    if not path.is_file():
        raise errors.SourceError(f"no {PRIOR_FILE}: written by a conversion without the held-out examples' "
                                 "prior items; convert the data again", file=directory)
    with np.load(path) as arrays:
        if f"{split}_offsets" not in arrays:
            raise errors.SourceError(f"{PRIOR_FILE} has no split {split!r}", file=directory)
        values, offsets = arrays[f"{split}_values"], arrays[f"{split}_offsets"]
    return [values[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


def read_metadata(directory):
    """The `metadata.json` of a directory `write_tfrecords` completed."""
    path = pathlib.Path(directory) / METADATA_FILE
    if not path.is_file():
        raise errors.SourceError(f"no {METADATA_FILE}: not a complete TFRecord output directory "
                                 "(written by `python -m tfrec.data convert`)", file=directory)
    return json.loads(path.read_text())


def _write_split(chunks, directory, split, num_shards, total):
    """Writes one split's shards; returns (examples written, names of the features written)."""
    writers = [tf.io.TFRecordWriter(str(directory / shard_name(split, s, num_shards))) for s in range(num_shards)]
    written = 0
    features = list(FEATURES)
    serialize = None
    try:
        for chunk in chunks:
            if serialize is None:
                features += [name for name in ROW_FEATURES if name in chunk]
                serialize = _Serializer(features)
            columns = {name: chunk[name].reshape(len(chunk[name]), -1) for name in features}
            for row in range(len(columns[schema.LABEL])):
                shard = min(written * num_shards // max(total, 1), num_shards - 1)
                writers[shard].write(serialize({name: values[row].tolist() for name, values in columns.items()}))
                written += 1
    finally:
        for writer in writers:
            writer.close()
    if written != total:
        raise errors.DataError(f"expected {total} {split} examples, got {written}", file=str(directory))
    return written, features


def read_tfrecords(directory, split, parallel_batch=1024, features=None):
    """Reads one split written by `write_tfrecords`, in the order written.

    Args:
        directory: the output directory of `write_tfrecords`.
        split: "train", "valid" or "test".
        parallel_batch: records parsed together (parsing speed only).
        features: names of the features to read; None: every one written.

    Returns:
        unbatched `tf.data.Dataset` of example dicts with the dtypes and shapes
        of `examples.FEATURES` and `examples.ROW_FEATURES` (history features [N]),
        read from the shard files in order.
    """
    directory = pathlib.Path(directory)
    metadata = read_metadata(directory)
    if split not in metadata["splits"]:
        raise errors.SourceError(f"no split {split!r}; it has {sorted(metadata['splits'])}", file=directory)
    written = metadata["splits"][split].get("features", list(FEATURES))
    missing = sorted(set(features or ()) - set(written))
    if missing:
        raise errors.SourceError(f"split {split!r} has no feature(s) {missing}: convert the data again with this "
                                 "tfrec", file=directory)
    names = list(features or written)
    length = metadata["history_length"]
    spec = {
        name: tf.io.FixedLenFeature([length] if ALL_FEATURES[name][1] else [],
                                    tf.float32 if ALL_FEATURES[name][0] == np.float32 else tf.int64)
        for name in names
    }

    def parse(records):
        parsed = tf.io.parse_example(records, spec)
        return {name: tf.cast(parsed[name], tf.as_dtype(ALL_FEATURES[name][0])) for name in names}

    files = [str(directory / f) for f in metadata["splits"][split]["files"]]
    return (
        tf.data.TFRecordDataset(files)
        .batch(parallel_batch)
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .unbatch()
    )
