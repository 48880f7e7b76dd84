"""The main job (`python -m tfrec.demo`) end to end, with the tiny encoder on MovieLens-100K."""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

MAX_LINES = 60  # what `make demo` may print
HEADROOM = 5  # lines left for what the demo may print later
LINES_PER_USER = 6  # a blank line, the user, the three explained recommendations, the other seven


@pytest.mark.integration
def test_demo_trains_exports_serves_and_prints_recommendations(ml100k_dir, tmp_path):
    # The demo quiets TensorFlow itself: the environment carries no log settings.
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY")}
    result = subprocess.run(
        [
            sys.executable, "-m", "tfrec.demo",
            f"--data_dir={ml100k_dir}",
            f"--config={REPO_ROOT / 'configs' / 'synthetic_tiny.flags'}",
            f"--run_dir={tmp_path / 'run'}",
            f"--export_base={tmp_path / 'exports'}",
            "--port=0",
            "--users=1,42",
            "--allow_below_baseline",  # two tiny epochs trail the transitions baseline
        ],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for stage in ("describe", "train", "evaluate", "export", "serve", "query"):
        assert f"=== {stage}" in out
    assert (tmp_path / "exports" / "tfrec_demo" / "1" / "saved_model.pb").is_file()
    explained = re.findall(r"^\s+(\d)\. .+ \[item (\S+), score -?\d+\.\d{3}\]: "
                           r"(because you rated .+|no behaviour raised its score)$", out, flags=re.M)
    assert [int(rank) for rank, _, _ in explained] == [1, 2, 3] * 2  # the top 3 of both users
    assert any(re.search(r"\d \(\+\d\.\d{3}\)", reason) for _, _, reason in explained)
    others = re.findall(r"^\s+4-10\. (.+)$", out, flags=re.M)
    assert [len(re.findall(r" \[-?\d+\.\d{3}\](?:; |$)", line)) for line in others] == [7, 7]
    assert "served by model version 1" in out
    assert re.search(r"^val_HR@10 by epoch: \d\.\d{3} \d\.\d{3} \(best ", out, flags=re.M)
    assert out.splitlines()[-1].startswith("tfrec.demo: done in ")

    # Quiet: nothing but the demo's own lines, few enough for `make demo` (three users) to stay under
    # MAX_LINES with HEADROOM to spare, and no escape codes in output that is not a terminal.
    output = result.stdout + result.stderr
    lines = output.splitlines()
    assert len(lines) + LINES_PER_USER <= MAX_LINES - HEADROOM, output
    assert "\x1b" not in output
    # Warnings only (the tiny model's export is large for its weights), and none of TensorFlow's.
    noise = [line for line in result.stderr.splitlines()
             if re.match(r"[IEF]\d{4} ", line) or re.search(r"\.cc:\d+\]|absl::InitializeLog|tensorflow", line)]
    assert not noise, result.stderr
