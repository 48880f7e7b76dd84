"""Multi-worker training: two worker processes on localhost (`python -m tfrec.launch`) under
MultiWorkerMirroredStrategy, against one process; a killed worker; a missing or bad TF_CONFIG."""

import json
import re
import signal
import subprocess
import sys
import time

import pytest

from train_helpers import REPO_ROOT, TINY_FLAGS, read_jsonl, subprocess_env

# As in test_train_distributed: 64 equal training windows, a global batch of 64 holds them all whatever
# the shuffle, a frozen encoder and no dropout: the first step's loss does not depend on the replicas.
FIRST_STEP = ["--verbose=0", "--max_steps=1", "--steps_per_epoch=1", "--epochs=1", "--dropout=0",
              "--encoder_trainable=none", "--batch_size=64", "--source=synthetic:users=64,items=150,per_user=6,seed=0"]
EPOCHS = 2
STEPS = 2


def _launch(directory, *args, log=None):
    command = [sys.executable, "-m", "tfrec.launch", "--workers=2", "--", f"--flagfile={TINY_FLAGS}",
               f"--run_dir={directory}", *args]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=subprocess_env(), text=True,
                            stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT)


def _first_epoch(directory):
    return next(r for r in read_jsonl(directory / "training_log.jsonl") if r["event"] == "epoch")


def test_two_workers_match_one_process_first_step_loss(tmp_path):
    single = subprocess.Popen([sys.executable, "-m", "tfrec.train", f"--flagfile={TINY_FLAGS}", *FIRST_STEP,
                               f"--run_dir={tmp_path / 'one'}", "--strategy=one_device"], cwd=REPO_ROOT,
                              env=subprocess_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    workers = _launch(tmp_path / "two", *FIRST_STEP)
    single_output, workers_output = single.communicate(timeout=400)[0], workers.communicate(timeout=400)[0]
    assert single.returncode == 0, single_output[-3000:]
    assert workers.returncode == 0, workers_output[-3000:]
    assert "[worker 0] " in workers_output and "[worker 1] " in workers_output
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    assert (config["train_config"]["strategy"], config["num_replicas"]) == ("multi_worker", 2)
    one, two = _first_epoch(tmp_path / "one"), _first_epoch(tmp_path / "two")
    assert one["step"] == two["step"] == 1
    assert two["loss"] == pytest.approx(one["loss"], abs=1e-4)
    assert two["val_loss"] == pytest.approx(one["val_loss"], rel=1e-4)
    # The chief alone wrote the run directory: one start, one epoch.
    assert [r["event"] for r in read_jsonl(tmp_path / "two" / "training_log.jsonl")] == ["start", "epoch", "end"]


def _backup_epoch(directory):
    try:
        return json.loads((directory / "checkpoints" / "backup" / "training_metadata.json").read_text())["epoch"]
    except (OSError, ValueError):
        return -1


def _worker_pid(log_path, index):
    found = re.search(rf"\[launch\] worker {index}: pid (\d+)", log_path.read_text())
    return int(found.group(1)) if found else None


def test_killed_worker_stops_the_run_and_a_rerun_resumes_from_the_backup(tmp_path):
    directory, log_path = tmp_path / "run", tmp_path / "launch.log"
    args = [f"--epochs={EPOCHS}", f"--steps_per_epoch={STEPS}", "--checkpoint_every_steps=1", "--verbose=2",
            "--encoder_trainable=none"]
    with open(log_path, "w") as log:
        launcher = _launch(directory, *args, log=log)
        deadline = time.time() + 400
        while _backup_epoch(directory) < 1:  # the first epoch's backup
            assert launcher.poll() is None, log_path.read_text()[-3000:]
            assert time.time() < deadline, "no backup of the first epoch within 400 s"
            time.sleep(0.05)
        signal_sent = subprocess.run(["kill", "-KILL", str(_worker_pid(log_path, 1))])
        assert signal_sent.returncode == 0
        assert launcher.wait(timeout=120) != 0
    assert "[launch] worker 1 exited with status -9" in log_path.read_text()
    assert not (directory / "metrics.json").exists()

    rerun = _launch(directory, *args)
    output = rerun.communicate(timeout=400)[0]
    assert rerun.returncode == 0, output[-3000:]
    log = read_jsonl(directory / "training_log.jsonl")
    starts = [r for r in log if r["event"] == "start"]
    assert len(starts) == 2 and starts[0]["epoch"] == 0
    assert starts[1]["epoch"] >= 1 and starts[1]["step"] >= STEPS  # resumed from the chief's backup
    assert "[worker 1] " in output  # both workers took part in the resumed run
    assert [r["epoch"] for r in log if r["event"] == "epoch"][-1] == EPOCHS
    assert json.loads((directory / "metrics.json").read_text())["epochs"] == EPOCHS


@pytest.mark.parametrize("tf_config, expected", [
    (None, "reads its cluster from the TF_CONFIG environment variable, which is not set"),
    ("{cluster:", "TF_CONFIG='{cluster:' is not JSON"),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 3}}',
     "task {'type': 'worker', 'index': 3} is not one of the cluster's tasks {'worker': 1}"),
])
def test_multi_worker_without_a_good_tf_config_names_it(monkeypatch, tf_config, expected):
    from tfrec.config import ConfigError
    from tfrec.training import TrainConfig, Trainer

    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        Trainer(TrainConfig(strategy="multi_worker"))
