"""A training process killed mid-epoch resumes from its checkpoint when rerun."""

import json
import signal
import subprocess
import sys
import time

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
