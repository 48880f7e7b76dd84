"""The main job (`python -m tfrec.demo`) end to end, with the tiny encoder on MovieLens-100K."""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


@pytest.mark.integration
def test_demo_trains_exports_serves_and_prints_recommendations(ml100k_dir, tmp_path):
    result = subprocess.run(
        [
            sys.executable, "-m", "tfrec.demo",
            f"--data_dir={ml100k_dir}",
            f"--config={REPO_ROOT / 'configs' / 'synthetic_tiny.flags'}",
            f"--run_dir={tmp_path / 'run'}",
            f"--export_base={tmp_path / 'exports'}",
            "--port=0",
            "--users=1,42",
        ],
        cwd=REPO_ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for stage in ("describe", "train", "evaluate", "export", "serve", "query"):
        assert f"=== {stage}" in out
    assert (tmp_path / "exports" / "tfrec_demo" / "1" / "saved_model.pb").is_file()
    ranked = re.findall(r"^\s+(\d+)\. .+\[item (\S+), score", out, flags=re.M)
    assert [int(rank) for rank, _ in ranked] == list(range(1, 11)) * 2
    assert "served by model version 1" in out
    reasons = re.findall(r"^\s+(because you rated .+|no behaviour raised its score)$", out, flags=re.M)
    assert len(reasons) == 3 * 2  # the top 3 of both users
    assert any(re.search(r"\d \(\+\d\.\d{3}\)", reason) for reason in reasons)
