"""Version directories on disk: the name rule, manifests, stale temporary directories, racing exports, and the
catalogue an export carries forward from the newest complete version.

Version directories are written as the export writes them (the catalogue files, `export_info.json`, the
manifest last) around a placeholder `saved_model.pb`: what is checked here is the files, not the graph
(tests/test_export.py checks that a real export passes `check_version`).
"""

import errno
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from tfrec import disk_space, version_files
from tfrec.exporting import catalogue as catalogue_lib
from tfrec.exporting import exporter, layout

RUN_IDS = ["", "m1", "m2", "m3"]


def _write_version(model_dir, version, item_ids, manifest=True):
    """A version directory holding `item_ids` as an export writes its catalogue; returns its path."""
    path = os.path.join(model_dir, str(version))
    assets = os.path.join(path, "assets")
    os.makedirs(os.path.join(path, "variables"))
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(b"graph of version %d" % version)
    with open(os.path.join(path, "variables", "variables.data-00000-of-00001"), "wb") as f:
        f.write(b"\0" * 64)
    catalogue = catalogue_lib.Catalogue(item_ids, [""] + [f"text of {i}. More." for i in item_ids[1:]])
    os.makedirs(assets)
    catalogue.write_ids(os.path.join(assets, version_files.IDS_ASSET))
    catalogue.write_titles(os.path.join(assets, version_files.TITLES_ASSET))
    catalogue.write_jsonl(os.path.join(assets, version_files.ITEMS_ASSET))
    with open(os.path.join(assets, version_files.INFO_ASSET), "w") as f:
        json.dump({"num_items": catalogue.num_items, "version": version}, f)
    if manifest:
        version_files.write_manifest(path)
    return path


def _truncate(path, keep):
    with open(path, "rb+") as f:
        f.truncate(keep)


def test_only_plain_ascii_digit_directories_are_versions(tmp_path):
    for name in ("1", "3", "\u00b2", "\u0667", "007", "+4", "12a", ".tmp-9-abc"):
        (tmp_path / name).mkdir()
    (tmp_path / "5").write_text("a file, not a version")
    assert layout.existing_versions(str(tmp_path)) == [1, 3]
    assert layout.next_version(str(tmp_path)) == 4


def test_a_written_version_passes_and_each_altered_file_is_named(tmp_path):
    path = _write_version(str(tmp_path), 1, RUN_IDS + ["new1", "new2"])
    version_files.check_version(path)
    ids = os.path.join(path, "assets", "item_ids.txt")
    original = open(ids, "rb").read()
    _truncate(ids, len(original) // 2)
    with pytest.raises(version_files.IncompleteVersionError, match=rf"{ids}: \d+ bytes; manifest.json says"):
        version_files.check_version(path)
    with open(ids, "wb") as f:  # same size, other content
        f.write(original.replace(b"m1", b"m9"))
    with pytest.raises(version_files.IncompleteVersionError, match=rf"{ids}: its SHA-256 differs"):
        version_files.check_version(path)
    os.remove(os.path.join(path, "manifest.json"))  # an export written before manifests: counts still checked
    version_files.check_version(path)
    _truncate(ids, len(original) // 2)
    with pytest.raises(version_files.IncompleteVersionError,
                       match=rf"{ids}: 3 items; export_info.json says the version serves 5"):
        version_files.check_version(path)
    os.remove(os.path.join(path, "variables", "variables.data-00000-of-00001"))
    os.remove(os.path.join(path, "saved_model.pb"))
    with pytest.raises(version_files.IncompleteVersionError, match="no saved_model.pb"):
        version_files.check_version(path)


def test_a_truncated_items_file_is_an_error_naming_file_and_line(tmp_path):
    path = _write_version(str(tmp_path), 1, RUN_IDS)
    items = os.path.join(path, "assets", "items.jsonl")
    _truncate(items, os.path.getsize(items) - 5)
    with pytest.raises(ValueError, match=rf"{items}, line 3: expected a JSON object .*truncated"):
        catalogue_lib.read_jsonl(items)


def test_added_items_survive_an_empty_newest_version_and_a_broken_one_is_refused(tmp_path, caplog):
    model_dir = str(tmp_path / "movies")
    _write_version(model_dir, 1, RUN_IDS + ["new1", "new2"])
    os.makedirs(os.path.join(model_dir, "2"))  # empty, e.g. just made
    run_catalogue = catalogue_lib.Catalogue(RUN_IDS, ["", "a", "b", "c"])
    with caplog.at_level(logging.WARNING):
        ids, texts, titles = exporter.carried_items(str(tmp_path), "movies", run_catalogue)
    assert ids == ["new1", "new2"] and texts == ["text of new1. More.", "text of new2. More."]
    assert titles == ["text of new1", "text of new2"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("passing over version 2: it is empty" in w for w in warnings), warnings
    broken = _write_version(model_dir, 3, RUN_IDS + ["new1", "new2", "new3"])
    items = os.path.join(broken, "assets", "items.jsonl")
    _truncate(items, 40)  # new3 could be carried from no other version: refused, not dropped
    with pytest.raises(version_files.IncompleteVersionError,
                       match=rf"^version 3 is incomplete \({re.escape(items)}: .*\): the items it holds cannot be "
                             rf"carried forward; repair or remove {re.escape(broken)}, or export with "
                             "--no_keep_catalogue$"):
        exporter.carried_items(str(tmp_path), "movies", run_catalogue)


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_temporary_directories_of_dead_exports_are_removed_and_live_ones_kept(tmp_path):
    model_dir = tmp_path / "m"
    host, dead, old = socket.gethostname(), _dead_pid(), time.time() - 2 * layout.STALE_STAGE_SECONDS
    names = {
        "dead_old": f".tmp-5-{host}-{dead}-abc", "live_old": f".tmp-6-{host}-{os.getpid()}-abc",
        "dead_recent": f".tmp-7-{host}-{dead}-abc", "other_host": f".tmp-8-elsewhere.example-{dead}-abc",
    }
    for key, name in names.items():
        (model_dir / name / "variables").mkdir(parents=True)
        if key != "dead_recent":
            os.utime(model_dir / name, (old, old))
    assert layout.next_version(str(model_dir)) == 9  # after the versions live exports are writing
    with layout.staged_version(str(tmp_path), "m", version=1) as stage:
        assert f"-{host}-{os.getpid()}-" in os.path.basename(stage.path)
    assert sorted(os.listdir(model_dir)) == sorted(["1", names["live_old"], names["dead_recent"], names["other_host"]])


def test_an_export_losing_a_race_for_its_version_says_so_and_leaves_nothing(tmp_path):
    with pytest.raises(FileExistsError, match=r"m/1 was written by another export while this one ran"):
        with layout.staged_version(str(tmp_path), "m") as stage:
            (tmp_path / "m" / "1").mkdir()  # the other export renames its complete version first
            (tmp_path / "m" / "1" / "saved_model.pb").write_text("theirs")
            (tmp_path / "m" / os.path.basename(stage.path) / "saved_model.pb").write_text("ours")
    assert os.listdir(tmp_path / "m") == ["1"]
    assert (tmp_path / "m" / "1" / "saved_model.pb").read_text() == "theirs"


def test_a_full_disk_met_while_writing_is_one_storage_error(tmp_path):
    with pytest.raises(disk_space.StorageError, match=r"^export: writing .*m failed: No space left on device"):
        with disk_space.storage_errors(str(tmp_path / "m"), "export"):
            with open("/dev/full", "w") as f:  # a device that is always full
                f.write("x")
                f.flush()
    with pytest.raises(disk_space.StorageError, match=r"^export: writing .*m failed: No space left"):
        with disk_space.storage_errors(str(tmp_path / "m"), "export"):
            raise tf.errors.ResourceExhaustedError(None, None, "saved_model.pb; No space left on device")
    with pytest.raises(tf.errors.ResourceExhaustedError, match="OOM"):  # not a disk's: left as it is
        with disk_space.storage_errors(str(tmp_path / "m"), "export"):
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
    with pytest.raises(disk_space.StorageError, match=r"^export: \d+ MB free in \S+; it needs about 1000000 MB"):
        disk_space.require_free(str(tmp_path / "not" / "made" / "yet"), 10**12, "export")


def test_a_file_size_limit_met_while_writing_is_one_storage_error(tmp_path):
    with pytest.raises(disk_space.StorageError, match=r"^export: writing .*m failed: File too large") as caught:
        with disk_space.storage_errors(str(tmp_path / "m"), "export"):  # how TensorFlow reports EFBIG
            raise tf.errors.OutOfRangeError(None, None, "m/.tmp-1/saved_model.pb.tmp0; File too large")
    assert caught.value.errno == errno.EFBIG
    with pytest.raises(tf.errors.OutOfRangeError, match="End of sequence"):  # not a file size limit: left as it is
        with disk_space.storage_errors(str(tmp_path / "m"), "export"):
            raise tf.errors.OutOfRangeError(None, None, "End of sequence")
