"""Versioned, atomic export directories: `BASE/NAME/VERSION/`.

TF Serving watches `BASE/NAME/` and serves the highest integer sub-directory.
A version is therefore written under a temporary sibling name that is not an
integer (`.tmp-VERSION-HOST-PID-xxxx`) and renamed to `VERSION` only once it
is complete, so a half-written export is never picked up. The temporary
directories of exports that died (their process is gone on this host and they
have not changed for `STALE_STAGE_SECONDS`) are removed by the next export.

Example:

>>> with staged_version("exports", "movies") as stage:  # doctest: +SKIP
...     write_everything(stage.path)
>>> stage.final_path  # doctest: +SKIP
'exports/movies/3'
"""

import contextlib
import dataclasses
import errno
import os
import re
import shutil
import socket
import tempfile
import time

from absl import logging

from tfrec import file_modes, version_files

TEMP_PREFIX = ".tmp-"
STALE_STAGE_SECONDS = 600
_STAGE_NAME = re.compile(r"\.tmp-([0-9]+)-(.+)-([0-9]+)-[^-]+", re.ASCII)  # version, host, pid, mkdtemp's suffix


def existing_versions(model_dir):
    """Returns the sorted integer versions present in `model_dir` (may not exist): directories named by
    ASCII digits only, as TF Serving reads them ("²" or "٧" are not versions)."""
    return version_files.version_numbers(model_dir)


def next_version(model_dir):
    """Returns the integer after the highest version, existing or being written by a live export (1 when none)."""
    versions = existing_versions(model_dir) + [stage.version for stage in _stages(model_dir) if stage.alive]
    return max(versions) + 1 if versions else 1


@dataclasses.dataclass
class _Stage:
    path: str
    version: int
    alive: bool  # its process may still be writing (it runs, or runs on another host)


def _process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _stages(model_dir):
    """The temporary directories of exports in `model_dir`, named as `staged_version` names them."""
    try:
        names = os.listdir(model_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    host, stages = socket.gethostname(), []
    for name in names:
        match = _STAGE_NAME.fullmatch(name)
        if match:
            alive = match.group(2) != host or _process_exists(int(match.group(3)))
            stages.append(_Stage(os.path.join(model_dir, name), int(match.group(1)), alive))
    return stages


def remove_stale_stages(model_dir: str, min_age_seconds: float = STALE_STAGE_SECONDS) -> list:
    """Removes the temporary directories of exports whose process is gone (on this host) and that have not
    changed for `min_age_seconds`; returns their paths."""
    removed = []
    for stage in _stages(model_dir):
        with contextlib.suppress(FileNotFoundError):
            if not stage.alive and time.time() - os.stat(stage.path).st_mtime >= min_age_seconds:
                shutil.rmtree(stage.path)
                removed.append(stage.path)
                logging.info("removed %s, left by an interrupted export (its process is gone)", stage.path)
    return removed


@dataclasses.dataclass
class StagedVersion:
    """A version being written: `path` (temporary) becomes `final_path`."""

    version: int
    path: str
    final_path: str


@contextlib.contextmanager
def staged_version(export_base, model_name, version=None):
    """Context manager yielding a `StagedVersion` to write into.

    On normal exit the temporary directory is renamed to its version number;
    on an exception it is deleted and the exception propagates.

    Args:
        export_base: directory holding one sub-directory per model name.
        model_name: name of the model (TF Serving `model_spec.name`).
        version: integer version to write, or None for the next free one.

    Raises:
        ValueError: bad model name or version.
        FileExistsError: the requested version already exists, or another
            export completed the same version first (nothing is written).
    """
    if not model_name or os.sep in model_name or model_name.startswith("."):
        raise ValueError(
            f"model_name must be a plain directory name, got {model_name!r}"
        )
    model_dir = os.path.join(export_base, model_name)
    if version is None:
        version = next_version(model_dir)
    elif int(version) < 1:
        raise ValueError(f"version must be a positive integer, got {version}")
    version = int(version)
    final_path = os.path.join(model_dir, str(version))
    if os.path.exists(final_path):
        raise FileExistsError(
            f"export version {final_path} already exists; give another "
            "version or none to use the next free one"
        )
    os.makedirs(model_dir, exist_ok=True)
    remove_stale_stages(model_dir)
    path = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{version}-{socket.gethostname()}-{os.getpid()}-", dir=model_dir)
    file_modes.apply_umask(path)
    stage = StagedVersion(version=version, path=path, final_path=final_path)
    try:
        yield stage
        _publish(path, final_path)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


def _publish(path, final_path):
    """Renames the staged `path` to `final_path`, never over a version another export completed meanwhile."""
    try:
        # os.rename refuses to replace a non-empty directory: a concurrent
        # export of the same version fails here instead of being overwritten.
        os.rename(path, final_path)
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        raise FileExistsError(
            f"{final_path} was written by another export while this one ran; this export was discarded "
            "(run it again to write the next version)") from None
