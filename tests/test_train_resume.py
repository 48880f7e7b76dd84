"""A training process killed mid-epoch resumes from its checkpoint when rerun."""

import json
import signal
import subprocess
import sys
import time

import pytest

from train_helpers import REPO_ROOT, TINY_FLAGS, read_jsonl, subprocess_env

EPOCHS = 3
STEPS = 4


def _command(directory):
    return [sys.executable, "-m", "tfrec.train", f"--flagfile={TINY_FLAGS}", f"--run_dir={directory}",
            f"--epochs={EPOCHS}", f"--steps_per_epoch={STEPS}", "--checkpoint_every_steps=2",
            "--verbose=0"]


def _backup_epoch(directory):
    metadata = directory / "checkpoints" / "backup" / "training_metadata.json"
    try:
        return json.loads(metadata.read_text())["epoch"]
    except (OSError, ValueError):
        return -1


def test_killed_run_resumes_and_finishes(tmp_path):
    directory = tmp_path / "run"
    env = subprocess_env()
    process = subprocess.Popen(_command(directory), cwd=REPO_ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while _backup_epoch(directory) < 1:  # a mid-epoch backup inside the second epoch
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.time() < deadline, "no mid-epoch checkpoint within 240 s"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert not (directory / "metrics.json").exists()
    killed_epochs = [r["epoch"] for r in read_jsonl(directory / "training_log.jsonl") if r["event"] == "epoch"]
    assert 1 <= len(killed_epochs) < EPOCHS

    done = subprocess.run(_command(directory), cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    log = read_jsonl(directory / "training_log.jsonl")
    starts = [r for r in log if r["event"] == "start"]
    assert [s["epoch"] for s in starts][0] == 0 and len(starts) == 2
    assert starts[1]["epoch"] >= 1 and starts[1]["step"] >= STEPS  # resumed, not restarted
    assert [r["epoch"] for r in log if r["event"] == "epoch"][-1] == EPOCHS
    assert json.loads((directory / "metrics.json").read_text())["epochs"] == EPOCHS


def _rerun(directory):
    return subprocess.run(_command(directory), cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True,
                          timeout=300)


def _killed_in_a_backup(directory, state):
    """A finished tiny run whose backup directory is then put in the `state` a kill during a save leaves."""
    first = _rerun(directory)
    assert first.returncode == 0, first.stderr[-3000:]
    (directory / "metrics.json").unlink()  # the run is to train again from its backup
    backup = directory / "checkpoints" / "backup"
    weights, metadata = backup / "latest.weights.h5", backup / "training_metadata.json"
    if state == "truncated, nothing to fall back on":  # the first backup, cut by the kill
        for path in backup.glob("*.bkp"):
            path.unlink()
        weights.write_bytes(weights.read_bytes()[:100])
    elif state == "between the renames":  # the latest moved aside, the new one not yet in place
        weights.replace(backup / "latest.weights.h5.bkp")
        metadata.replace(backup / "training_metadata.json.bkp")
    (backup / "latest.tmp4242.weights.h5").write_bytes(b"half a file")  # a save cut before its rename
    return backup


@pytest.mark.parametrize("state", ["truncated, nothing to fall back on", "between the renames"])
def test_a_kill_during_a_backup_never_wedges_the_run(tmp_path, state):
    directory = tmp_path / "run"
    backup = _killed_in_a_backup(directory, state)
    done = _rerun(directory)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((directory / "metrics.json").read_text())["epochs"] == EPOCHS
    assert not list(backup.glob("*.tmp*"))
    assert "backup" in done.stderr  # the warning says what was repaired
