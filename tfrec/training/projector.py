"""Item embeddings for the TensorBoard Embedding Projector.

Writes, in a TensorBoard log directory: a TF checkpoint holding the
embedding matrix (found through the directory's `checkpoint` file), `metadata.tsv` (one row per item: id and title, with a
header line) and `projector_config.pbtxt` linking the two — the files
`tensorboard.plugins.projector.visualize_embeddings` would write, produced
without needing the `tensorboard` package.

Example:

>>> write_projector("runs/x/tensorboard", embeddings,
...                 {"item_id": ids, "title": titles})
"""

import os

import numpy as np
import tensorflow as tf

from tfrec.training import run_dir

TENSOR = "item_embeddings"
CHECKPOINT_NAME = "item_embeddings"
METADATA = "metadata.tsv"
CONFIG = "projector_config.pbtxt"


def _cell(value):
    return " ".join(str(value).split())  # no tabs or newlines inside a cell


def write_projector(log_dir, embeddings, metadata):
    """Writes the projector files for `embeddings` into `log_dir`.

    Args:
        log_dir: the TensorBoard log directory.
        embeddings: float array [n, d], one row per item.
        metadata: dict column name -> sequence of n values (e.g. item_id, title).

    Returns:
        The checkpoint path written.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    for name, values in metadata.items():
        if len(values) != len(embeddings):
            raise ValueError(f"projector metadata column {name!r} has {len(values)} rows, "
                             f"expected one per embedding ({len(embeddings)})")
    os.makedirs(log_dir, exist_ok=True)
    rows = ["\t".join(metadata)] + ["\t".join(_cell(v) for v in row) for row in zip(*metadata.values())]
    run_dir.write_text_atomic(os.path.join(log_dir, METADATA), "\n".join(rows) + "\n")
    checkpoint = tf.train.Checkpoint(**{TENSOR: tf.Variable(embeddings)})
    manager = tf.train.CheckpointManager(
        checkpoint, log_dir, max_to_keep=1, checkpoint_name=CHECKPOINT_NAME
    )
    saved = manager.save()  # also updates the `checkpoint` file the projector reads
    config = (
        "embeddings {\n"
        f'  tensor_name: "{TENSOR}/.ATTRIBUTES/VARIABLE_VALUE"\n'
        f'  metadata_path: "{METADATA}"\n'
        "}\n"
    )
    run_dir.write_text_atomic(os.path.join(log_dir, CONFIG), config)
    return saved
