"""Training that cannot go on ends with one clear error: a diverged loss, a read-only run directory, a disk
too full for the backup of the training state or a file size limit below it (h5py may otherwise crash the
process)."""

import os
import re
import resource
import shutil
import tempfile

import pytest
import tensorflow as tf
from train_helpers import train_flags

from tfrec import disk_space, train
from tfrec.training import atomic_files
from tfrec.config import ConfigError


def test_a_diverging_loss_is_an_error_naming_the_step_and_the_settings(tmp_path):
    with pytest.raises(ConfigError) as info:  # a TrainingDivergedError, its fields named as flags
        train.train(train_flags(f"--run_dir={tmp_path / 'run'}", "--learning_rate=1e8", "--clipnorm=0",
                                "--epochs=1"))
    message = str(info.value)
    assert re.match(r"training diverged: the (loss became (nan|inf|-inf)|weights became NaN or infinite \(e.g. \S+\)|validation scores became NaN or infinite) at epoch 1, step \d+ "
                    r"\(--learning_rate=1e\+08, --clipnorm=0\); train again with a lower learning rate, or clip",
                    message), message


def _read_only_directory(tmp_path):
    """A directory this process cannot write in: a 0o555 one, or for root (who writes there anyway) /sys."""
    for directory in (tmp_path / "read-only", "/sys"):
        os.makedirs(directory, exist_ok=True)
        if str(directory) != "/sys":
            os.chmod(directory, 0o555)
        try:
            handle, probe = tempfile.mkstemp(dir=directory)
        except OSError:
            return str(directory)
        os.close(handle)
        os.unlink(probe)
    pytest.skip("no directory here refuses this process's writes")


def test_a_read_only_run_directory_is_refused_before_the_data_loads(tmp_path):
    run = os.path.join(_read_only_directory(tmp_path), "run")
    with pytest.raises(disk_space.StorageError, match=rf"^--run_dir={re.escape(run)}: cannot write in "):
        train.train(train_flags(f"--run_dir={run}", "--source=movielens:/no/such/dir"))  # the data is never read


def test_a_backup_without_room_is_an_error_not_a_crash(tmp_path, monkeypatch):
    run = tmp_path / "run"
    values = train_flags(f"--run_dir={run}", "--epochs=1")
    real = shutil.disk_usage

    def almost_full(path):  # the file system of the run directory has 1 kB left
        usage = real(path)
        return usage._replace(free=1000) if str(path).startswith(str(run)) else usage

    monkeypatch.setattr(shutil, "disk_usage", almost_full)
    with pytest.raises(disk_space.StorageError, match=r": 0 MB free in .*run.*; it needs about \d+ MB"):
        train.train(values)
    backup = run / "checkpoints" / "backup"
    assert not backup.exists() or not [name for name in os.listdir(backup) if name.endswith(".h5")]


def test_a_file_size_limit_below_the_weights_is_an_error_not_a_crash(tmp_path, monkeypatch):
    real = resource.getrlimit
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1000, resource.RLIM_INFINITY)
                        if which == resource.RLIMIT_FSIZE else real(which))  # as after `ulimit -f 1`
    with pytest.raises(disk_space.StorageError, match=r"^saving w: the weights file needs about 1\.1 MB, over this "
                                                      r"process's file size limit of 0\.0 MB \(ulimit -f\)$"):
        atomic_files.require_room_for_weights(str(tmp_path), [tf.Variable(tf.zeros((100, 100)))], "saving w")
