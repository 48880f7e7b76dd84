"""Item embeddings for the TensorBoard Embedding Projector.

Writes, in the TensorBoard log root of a run (`DIR/tensorboard`, whose
sub-directories `train` and `validation` hold the scalars):

- `item_embeddings.tsv`: the embedding matrix, one item a row, tab-separated;
- `metadata.tsv`: one row per item (id and title) under a header line;
- `projector_config.pbtxt`: the tensor, named `item_embeddings`, with its file
  and metadata (the files `tensorboard.plugins.projector.visualize_embeddings`
  would write, produced without the `tensorboard` package);
- an event file with no summaries, which makes the log root a run of its own,
  so the projector shows the labelled items with `--logdir` either the log
  root (run ".") or the run directory (run "tensorboard").

A tensor file, unlike a checkpoint, needs no TensorFlow where TensorBoard
runs, and stays out of the runs below the log root: TensorBoard's projector
takes any checkpoint it finds in a run's parent directory for that run's,
unlabelled.

Example:

>>> write_projector("runs/x/tensorboard", embeddings, {"item_id": ids, "title": titles})
'runs/x/tensorboard/projector_config.pbtxt'
"""

import io
import os

import numpy as np
import tensorflow as tf

from tfrec.training import atomic_files

TENSOR = "item_embeddings"
TENSOR_FILE = "item_embeddings.tsv"
METADATA = "metadata.tsv"
CONFIG = "projector_config.pbtxt"


def _cell(value):
    return " ".join(str(value).split())  # no tabs or newlines inside a cell


def write_projector(log_dir: str, embeddings, metadata: dict) -> str:
    """Writes the projector files for `embeddings` into `log_dir`.

    Args:
        log_dir: the TensorBoard log root of the run.
        embeddings: float array [n, d], one row per item.
        metadata: dict column name -> sequence of n values (e.g. item_id, title).

    Returns:
        The path of the projector config written.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    for name, values in metadata.items():
        if len(values) != len(embeddings):
            raise ValueError(f"projector metadata column {name!r} has {len(values)} rows, "
                             f"expected one per embedding ({len(embeddings)})")
    os.makedirs(log_dir, exist_ok=True)
    rows = ["\t".join(metadata)] + ["\t".join(_cell(v) for v in row) for row in zip(*metadata.values())]
    atomic_files.write_text_atomic(os.path.join(log_dir, METADATA), "\n".join(rows) + "\n")
    matrix = io.StringIO()
    np.savetxt(matrix, embeddings, fmt="%.6g", delimiter="\t")
    atomic_files.write_text_atomic(os.path.join(log_dir, TENSOR_FILE), matrix.getvalue())
    config = (
        "embeddings {\n"
        f'  tensor_name: "{TENSOR}"\n'
        f'  tensor_path: "{TENSOR_FILE}"\n'
        f'  metadata_path: "{METADATA}"\n'
        "}\n"
    )
    path = os.path.join(log_dir, CONFIG)
    atomic_files.write_text_atomic(path, config)
    if not tf.io.gfile.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        tf.summary.create_file_writer(log_dir).close()
    return path
