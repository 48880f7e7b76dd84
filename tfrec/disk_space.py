"""Free space and writability, checked before writes that must not fail halfway.

A full disk while h5py writes a weights file can end the process with a
segmentation fault; TensorFlow's SavedModel writer reports one as a
`ResourceExhaustedError` traceback; a read-only directory is found out only
when the first file is written, after minutes of loading. `require_writable`
and `require_free` check up front, and `storage_errors` turns a full disk, a
quota or a read-only file system met inside its block into the same
`StorageError`: an `OSError` whose message is one line naming the directory.

Example:

>>> require_free(".", 10**18, "the export")  # doctest: +ELLIPSIS
Traceback (most recent call last):
tfrec.disk_space.StorageError: the export: ... MB free in ...; it needs about 1000000000000 MB (free some space, ...)
"""

import contextlib
import errno
import math
import os
import shutil
import tempfile

import tensorflow as tf

_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG)
_TF_STORAGE_MESSAGES = {"No space left": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
                        "Read-only file system": errno.EROFS, "File too large": errno.EFBIG}  # EFBIG: a file size limit


class StorageError(OSError):
    """A directory cannot take a write: not writable, or not enough free space."""

    def __init__(self, code: int, message: str):
        super().__init__(code, message)
        self.message = message

    def __str__(self):
        return self.message


def variables_bytes(variables) -> int:
    """Bytes of the values of the distinct `variables` (keras or tf), each counted once: what a weights
    file of them holds, headers aside."""
    seen = {id(v): v for v in variables}
    return sum(math.prod(v.shape) * tf.as_dtype(v.dtype).size for v in seen.values())


def nearest_existing(path: str) -> str:
    """`path`, or its nearest ancestor that exists (where a write to `path` would first land)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def require_writable(path: str, what: str) -> None:
    """Raises `StorageError` unless a file can be created in `path` (or, if it does not exist yet, in the
    nearest existing directory above it, where it would be made)."""
    directory = nearest_existing(path)
    try:
        handle, probe = tempfile.mkstemp(dir=directory, prefix=".tfrec-write-check-")
    except OSError as e:
        raise StorageError(e.errno or errno.EACCES,
                           f"{what}: cannot write in {directory} ({e.strerror}); give a writable directory") from None
    os.close(handle)
    os.unlink(probe)


def require_free(path: str, needed_bytes: int, what: str) -> None:
    """Raises `StorageError` when the file system of `path` has fewer than `needed_bytes` free."""
    directory = nearest_existing(path)
    free = shutil.disk_usage(directory).free
    if free < needed_bytes:
        raise StorageError(errno.ENOSPC, f"{what}: {free / 1e6:.0f} MB free in {directory}; it needs about "
                                         f"{needed_bytes / 1e6:.0f} MB (free some space, or write elsewhere)")


@contextlib.contextmanager
def storage_errors(path: str, what: str):
    """Turns a full disk, a quota, a file size limit, a read-only file system or a permission error raised in
    the block (an `OSError`, or TensorFlow's `ResourceExhaustedError`, `OutOfRangeError` (EFBIG) or
    `PermissionDeniedError`) into a one-line `StorageError` naming `path`."""
    try:
        yield
    except StorageError:
        raise
    except OSError as e:
        if e.errno not in _STORAGE_ERRNOS:
            raise
        raise StorageError(e.errno, f"{what}: writing {path} failed: {e.strerror}"
                                    f"{' (' + e.filename + ')' if e.filename else ''}") from None
    except (tf.errors.ResourceExhaustedError, tf.errors.OutOfRangeError, tf.errors.PermissionDeniedError) as e:
        reason = next((text for text in _TF_STORAGE_MESSAGES if text in e.message), None)
        if reason is None and not isinstance(e, tf.errors.PermissionDeniedError):
            raise
        raise StorageError(_TF_STORAGE_MESSAGES.get(reason, errno.EACCES),
                           f"{what}: writing {path} failed: {reason or 'permission denied'}") from None
