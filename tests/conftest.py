"""Shared pytest fixtures: environment (a temporary text vector cache), the MovieLens-100K directory."""

import atexit
import os
import pathlib
import shutil
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The text vector cache of the tests' encoders (and of the commands they start): never the user's.
os.environ["TFREC_CACHE_DIR"] = tempfile.mkdtemp(prefix="tfrec-test-cache-")
atexit.register(shutil.rmtree, os.environ["TFREC_CACHE_DIR"], ignore_errors=True)

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _ml100k_dir():
    candidates = [os.environ.get("TFREC_DATA_DIR"), REPO_ROOT.parent / "shared" / "data" / "ml-100k"]
    for candidate in candidates:
        if candidate and (pathlib.Path(candidate) / "u.data").is_file():
            return pathlib.Path(candidate)
    return None


@pytest.fixture(scope="session")
def ml100k_dir():
    """Path of MovieLens-100K (`TFREC_DATA_DIR` or ../shared/data/ml-100k); skips when absent."""
    path = _ml100k_dir()
    if path is None:
        pytest.skip("MovieLens-100K not found: set TFREC_DATA_DIR or provide ../shared/data/ml-100k")
    return path


@pytest.fixture(scope="session")
def office_dir():
    """Path of the Amazon Office data (../shared/data/amazon-office); skips when absent."""
    path = REPO_ROOT.parent / "shared" / "data" / "amazon-office"
    if not (path / "interactions.csv").is_file():
        pytest.skip("Amazon Office data not found in ../shared/data/amazon-office")
    return path
