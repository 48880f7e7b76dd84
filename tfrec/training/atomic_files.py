"""Files written to a temporary name beside their place and renamed, so a file that exists is complete.

Example:

>>> write_json_atomic("runs/x/metrics.json", {"HR@10": 0.21})
>>> read_json("runs/x/metrics.json")
{'HR@10': 0.21}
"""

import errno
import json
import os
import resource
import tempfile

from keras.src.saving import saving_lib

from tfrec import disk_space, file_modes

WEIGHTS_FILE_OVERHEAD = 1 << 20  # HDF5 headers and names beyond the values, generously


def require_room_for_weights(directory: str, variables, what: str, previous: str = "") -> None:
    """Raises `disk_space.StorageError` unless `directory` has room for a weights file of `variables` (or
    for one as large as `previous`, an earlier such file, when that is larger) and the process's file size
    limit allows it: h5py may crash the process on a full disk or a file size limit instead of raising."""
    needed = disk_space.variables_bytes(variables) + WEIGHTS_FILE_OVERHEAD
    if previous and os.path.exists(previous):
        needed = max(needed, os.path.getsize(previous))
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and limit < needed:
        raise disk_space.StorageError(errno.EFBIG, f"{what}: the weights file needs about {needed / 1e6:.1f} MB, "
                                                   f"over this process's file size limit of {limit / 1e6:.1f} MB "
                                                   "(ulimit -f)")
    disk_space.require_free(directory, int(1.1 * needed), what)


def write_text_atomic(path: str, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
        file_modes.apply_umask(temporary)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_json_atomic(path: str, value) -> None:
    """Writes `value` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def save_weights_atomic(model, path: str) -> None:
    """Saves the model's weights, without its optimizer state, to `path`
    (a `.weights.h5` file) through a temporary file and a rename.

    `model.load_weights(path)` reads it back into a model built the same way,
    compiled or not.

    Raises:
        disk_space.StorageError: too little free space for the file (checked first).
    """
    suffix = ".weights.h5"
    if not path.endswith(suffix):
        raise ValueError(f"weights path {path!r} must end with {suffix!r}")
    temporary = f"{path[: -len(suffix)]}.tmp{os.getpid()}{suffix}"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    require_room_for_weights(os.path.dirname(os.path.abspath(path)), model.weights, f"saving {path}", path)
    try:
        # keras.Model.save_weights has no way to leave the optimizer out.
        saving_lib.save_weights_only(model, temporary, objects_to_skip=_optimizer(model))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _optimizer(model):
    optimizer = getattr(model, "optimizer", None)
    return [optimizer] if optimizer is not None else None


def load_weights(model, path: str) -> None:
    """Loads weights written by `save_weights_atomic`, leaving the optimizer as it is."""
    saving_lib.load_weights_only(model, path, objects_to_skip=_optimizer(model))


def read_json(file: str):
    """The JSON value in `file`."""
    with open(file, encoding="utf-8") as f:
        return json.load(f)


def read_jsonl(file: str) -> list:
    """The records of a JSON-lines file."""
    with open(file, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
