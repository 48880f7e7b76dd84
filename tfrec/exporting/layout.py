"""Versioned, atomic export directories: `BASE/NAME/VERSION/`.

TF Serving watches `BASE/NAME/` and serves the highest integer sub-directory.
A version is therefore written under a temporary sibling name that is not an
integer (`.tmp-VERSION-xxxx`) and renamed to `VERSION` only once it is
complete, so a half-written export is never picked up.

Example:

>>> with staged_version("exports", "movies") as stage:  # doctest: +SKIP
...     write_everything(stage.path)
>>> stage.final_path  # doctest: +SKIP
'exports/movies/3'
"""

import contextlib
import dataclasses
import os
import shutil
import tempfile

from tfrec import file_modes

TEMP_PREFIX = ".tmp-"


def existing_versions(model_dir):
    """Returns the sorted integer versions present in `model_dir` (may not exist)."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(name) for name in os.listdir(model_dir) if name.isdigit())


def next_version(model_dir):
    """Returns the integer after the highest existing version (1 when none)."""
    versions = existing_versions(model_dir)
    return versions[-1] + 1 if versions else 1


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
        FileExistsError: the requested version already exists.
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
    path = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{version}-", dir=model_dir)
    file_modes.apply_umask(path)
    stage = StagedVersion(version=version, path=path, final_path=final_path)
    try:
        yield stage
        # os.rename refuses to replace a non-empty directory: a concurrent
        # export of the same version fails here instead of being overwritten.
        os.rename(path, final_path)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
