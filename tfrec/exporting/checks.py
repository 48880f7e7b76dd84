"""Checks an export must pass: servable op types and no state saved twice.

`op_types` lists every op type in a SavedModel (graph nodes and function
library). `check_ops` compares them with the op registry of core TensorFlow
and of TensorFlow Text (each read in a fresh interpreter, since this process
may have loaded other op libraries): an op from anywhere else would make the
model unservable by stock TF Serving.

`size_report` compares the bytes on disk with the bytes of the model weights;
a ratio far above 1 means state is saved twice (a tokenizer vocabulary or
backbone tracked by two objects, optimizer slots...).

Example:

>>> report = check_ops("exports/movies/1")  # doctest: +SKIP
>>> sorted(report.text_ops)  # doctest: +SKIP
['FastWordpieceTokenizeWithOffsets', 'NormalizeUTF8', ...]
"""

import dataclasses
import functools
import os
import subprocess
import sys

from tensorflow.core.protobuf import saved_model_pb2

from tfrec import disk_space

# Prints the op names registered by core TensorFlow, a separator line, then
# those registered once tensorflow_text is imported too.
_LIST_REGISTERED_OPS = """
import tensorflow as tf
from tensorflow.core.framework import op_def_pb2
from tensorflow.python.client import pywrap_tf_session as session

def show():
    ops = op_def_pb2.OpList.FromString(session.TF_GetBuffer(session.TF_GetAllOpList()))
    print("\\n".join(sorted(op.name for op in ops.op)))

show()
print("--")
import tensorflow_text
show()
"""


class ExportCheckError(RuntimeError):
    """The export would not be servable or is larger than it should be."""


@functools.lru_cache(maxsize=None)
def registered_ops():
    """Op names registered by core TensorFlow and by TensorFlow Text.

    Read in a fresh interpreter, so that op libraries this process loaded do
    not count as core.

    Returns:
        (core, text): frozensets of op names; `text` excludes core ops.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", _LIST_REGISTERED_OPS],
        capture_output=True, text=True, env=env, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"listing the registered TensorFlow ops failed:\n{result.stderr}")
    core, with_text = result.stdout.split("--\n")
    core = frozenset(core.split())
    return core, frozenset(with_text.split()) - core


def op_types(export_dir):
    """Sorted op types used by the SavedModel in `export_dir` (graphs and functions)."""
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    types = set()
    for meta_graph in saved.meta_graphs:
        graph = meta_graph.graph_def
        types.update(node.op for node in graph.node)
        for function in graph.library.function:
            types.update(node.op for node in function.node_def)
    return sorted(types)


@dataclasses.dataclass
class OpReport:
    """Op types of an export split by the library registering them."""

    core_ops: list
    text_ops: list
    other_ops: list

    def summary(self):
        """Human-readable listing."""
        return (
            f"{len(self.core_ops)} core TensorFlow op types: {', '.join(self.core_ops)}\n"
            f"{len(self.text_ops)} TensorFlow Text op types: {', '.join(self.text_ops) or '-'}\n"
            f"{len(self.other_ops)} other op types: {', '.join(self.other_ops) or '-'}"
        )


def check_ops(export_dir):
    """Classifies the export's op types; raises if one is outside TF and TF Text.

    Returns:
        `OpReport`.

    Raises:
        ExportCheckError: some op types are registered by neither.
    """
    core, text = registered_ops()
    types = op_types(export_dir)
    report = OpReport(
        core_ops=[t for t in types if t in core],
        text_ops=[t for t in types if t in text],
        other_ops=[t for t in types if t not in core and t not in text],
    )
    if report.other_ops:
        raise ExportCheckError(
            f"{export_dir} uses op types outside core TensorFlow and TensorFlow Text, "
            f"which TF Serving cannot run: {report.other_ops}"
        )
    return report


def weights_bytes(variables):
    """Bytes of the distinct `variables` (keras or tf), each counted once."""
    return disk_space.variables_bytes(variables)


def directory_bytes(path):
    """Total bytes of the files under `path`."""
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


@dataclasses.dataclass
class SizeReport:
    """Bytes on disk of an export, against the bytes of the model weights.

    `catalogue_matrix_bytes` and `catalogue_file_bytes` are data the export
    adds on purpose (the precomputed catalogue embeddings; the catalogue,
    vocabulary, info and warmup files).

    - `state_ratio` = (variables/ - catalogue matrix) / weights: above 1 means
      state saved twice or not needed (optimizer slots, a backbone tracked by
      two objects);
    - `ratio` = (export - catalogue data) / weights: the whole export,
      program (saved_model.pb) included.
    """

    weights_bytes: int
    catalogue_matrix_bytes: int
    catalogue_file_bytes: int
    graph_bytes: int
    variables_bytes: int
    total_bytes: int

    @property
    def state_ratio(self):
        return (self.variables_bytes - self.catalogue_matrix_bytes) / self.weights_bytes

    @property
    def ratio(self):
        added = self.catalogue_matrix_bytes + self.catalogue_file_bytes
        return (self.total_bytes - added) / self.weights_bytes

    def summary(self):
        """One line with the figures in MB and both ratios."""
        mb = 1e6
        return (
            f"weights {self.weights_bytes / mb:.2f} MB; export {self.total_bytes / mb:.2f} MB = "
            f"saved_model.pb {self.graph_bytes / mb:.2f} + variables {self.variables_bytes / mb:.2f} "
            f"(catalogue matrix {self.catalogue_matrix_bytes / mb:.2f}) + other files "
            f"{(self.total_bytes - self.graph_bytes - self.variables_bytes) / mb:.2f} "
            f"(catalogue, vocabulary, warmup {self.catalogue_file_bytes / mb:.2f}); "
            f"ratio {self.ratio:.3f}, state ratio {self.state_ratio:.3f}"
        )


def size_report(export_dir, weights, catalogue_matrix_bytes=0, catalogue_files=()):
    """Measures `export_dir` against `weights` bytes (see `SizeReport`).

    Args:
        export_dir: the SavedModel directory.
        weights: bytes of the model weights (`weights_bytes`).
        catalogue_matrix_bytes: bytes of the catalogue embedding variable.
        catalogue_files: paths (relative to `export_dir`) of added data files.
    """
    return SizeReport(
        weights_bytes=weights,
        catalogue_matrix_bytes=catalogue_matrix_bytes,
        catalogue_file_bytes=sum(
            os.path.getsize(os.path.join(export_dir, name)) for name in catalogue_files
        ),
        graph_bytes=os.path.getsize(os.path.join(export_dir, "saved_model.pb")),
        variables_bytes=directory_bytes(os.path.join(export_dir, "variables")),
        total_bytes=directory_bytes(export_dir),
    )


def check_size(report, max_ratio, max_graph_bytes):
    """Raises if state is saved twice or the program is oversized.

    Args:
        report: `SizeReport`.
        max_ratio: limit on `report.state_ratio`.
        max_graph_bytes: limit on saved_model.pb (weights frozen into the
            graph as constants, or functions traced more than once, show here).

    Returns:
        list of warnings: `report.ratio` above `max_ratio` while both limits
        hold (the fixed size of the program dominates a very small model).

    Raises:
        ExportCheckError: a limit is exceeded.
    """
    if report.state_ratio > max_ratio:
        raise ExportCheckError(
            f"the export's variables are {report.state_ratio:.2f}x the model weights (limit "
            f"{max_ratio}): some state is saved twice or not needed. {report.summary()}"
        )
    if report.graph_bytes > max_graph_bytes:
        raise ExportCheckError(
            f"saved_model.pb is {report.graph_bytes / 1e6:.1f} MB (limit "
            f"{max_graph_bytes / 1e6:.1f} MB): weights frozen as constants or functions "
            f"traced twice? {report.summary()}"
        )
    if report.ratio > max_ratio:
        return [
            f"export is {report.ratio:.2f}x the weights (limit {max_ratio}), the program "
            f"(saved_model.pb, {report.graph_bytes / 1e6:.2f} MB) dominating small weights"
        ]
    return []
