"""`tfrec.evaluate` (and `tfrec.training.evaluate_run`) rebuild a run's model and
reproduce its metrics.json; scripts/explore_ensembles.py agrees with them."""

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest
from absl import flags
from train_helpers import REPO_ROOT, shared_run, subprocess_env

from tfrec import evaluate
from tfrec.config import ConfigError
from tfrec.training import evaluate_run, load_run
from tfrec.training.trainer import RUN_FACTS

NOT_RECOMPUTED = set(RUN_FACTS)


@pytest.fixture
def run_directory():
    return shared_run()[0]


def evaluate_flags(*args):
    """A fresh `FlagValues` with the flags of `python -m tfrec.evaluate`, parsed from `args`."""
    values = flags.FlagValues()
    evaluate.define_flags(values)
    values(["tfrec.evaluate", *args])
    return values


def test_evaluate_reproduces_metrics_json(run_directory):
    expected = json.loads((run_directory / "metrics.json").read_text())
    test = evaluate.evaluate(evaluate_flags(f"--run_dir={run_directory}"))
    assert set(test) == set(expected) - NOT_RECOMPUTED
    assert test == pytest.approx({k: expected[k] for k in test}, abs=1e-6)
    valid = evaluate.evaluate(evaluate_flags(f"--run_dir={run_directory}", "--eval_split=valid"))
    assert valid == pytest.approx({k: v for k, v in expected["valid"].items() if k != "baselines"}, abs=1e-6)


def test_evaluate_command_prints_the_metrics(run_directory):
    expected = json.loads((run_directory / "metrics.json").read_text())
    done = subprocess.run([sys.executable, "-m", "tfrec.evaluate", f"--run_dir={run_directory}"], cwd=REPO_ROOT,
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = json.loads(done.stdout)
    assert set(printed) == set(expected) - NOT_RECOMPUTED
    assert printed == pytest.approx({k: expected[k] for k in printed}, abs=1e-6)


def test_evaluate_requires_a_run_dir():
    with pytest.raises(flags.IllegalFlagValueError, match="run_dir"):
        evaluate_flags()


def test_load_run_restores_model_vocabulary_and_texts(run_directory):
    run = load_run(run_directory)
    texts = run.model.item_texts
    assert len(texts) == run.vocab.num_items + 1 and texts[0] == "" and all(texts[1:])
    assert run.model.item_ids == run.vocab.item_ids
    assert run.model_config.encoder == "tiny" and run.train_config["epochs"] == 2
    assert run.data_config.history_length == 20
    assert run.model.item_embeddings([1, 2]).shape[0] == 2


def test_evaluate_refuses_data_with_another_vocabulary(run_directory):
    other = "synthetic:users=20,items=40"
    with pytest.raises(ConfigError, match=r"^--source='synthetic:users=20,items=40': .*different vocabulary"):
        evaluate.evaluate(evaluate_flags(f"--run_dir={run_directory}", f"--source={other}"))
    with pytest.raises(ConfigError, match=r"^DataConfig\.source='synthetic:users=20,items=40': .*different vocabulary"):
        evaluate_run(run_directory, source=other)


def test_explore_ensembles_agrees_with_evaluate(run_directory, capsys):
    path = pathlib.Path(__file__).parents[1] / "scripts" / "explore_ensembles.py"
    spec = importlib.util.spec_from_file_location("explore_ensembles", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    expected = json.loads((run_directory / "metrics.json").read_text())
    values = flags.FlagValues()
    script.define_flags(values)
    values(["explore_ensembles", f"--run_dirs={run_directory},{run_directory}", "--prior_weights=1"])
    script.run(values)
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    figures = {row[0].lstrip("| "): [float(value.rstrip(" |")) for value in row[1:]] for row in rows}
    single = [expected["valid"]["HR@10"], expected["valid"]["NDCG@10"], expected["HR@10"], expected["NDCG@10"]]
    assert figures[str(run_directory)] == pytest.approx(single, abs=1e-4)
    # Two copies of one run ensemble to that run.
    assert figures["1-run ensembles (2 subsets)"] == pytest.approx(single, abs=1e-4)
    assert figures["2-run ensembles (1 subsets)"] == pytest.approx(single, abs=1e-4)
    assert figures["1-run ensembles (2 subsets) + 1.0 x log(1 + transitions)"] != pytest.approx(single, abs=1e-4)


def test_data_flags_given_to_evaluate_reach_the_data_config_typed():
    from tfrec import config_flags
    from tfrec.data import DataConfig

    values = flags.FlagValues()
    evaluate.define_flags(values)
    values(["evaluate", "--run_dir=unused", "--rating_range=2,10", "--split_fractions=0.7,0.2,0.1"])
    given = config_flags.given_values(DataConfig, values)
    assert given == {"rating_range": (2.0, 10.0), "split_fractions": (0.7, 0.2, 0.1)}
    assert DataConfig(**given).validate().rating_range == (2.0, 10.0)


def test_a_run_trained_on_relative_paths_evaluates_from_any_directory(tmp_path, monkeypatch):
    """The run directory stores the source's paths absolute; a missing source is one line, no traceback."""
    from tfrec import train
    from tfrec.data import synthetic
    from train_helpers import train_flags

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    (work / "data").mkdir(parents=True)
    elsewhere.mkdir()
    ds = synthetic.generate(users=40, items=60, per_user=10)
    ds.interactions.to_csv(work / "data" / "events.csv.gz", index=False)
    ds.items.to_csv(work / "data" / "items.csv", index=False)
    monkeypatch.chdir(work)
    train.train(train_flags("--source=table:interactions=data/events.csv.gz,items=data/items.csv",
                            "--run_dir=run", "--epochs=1"))
    saved = json.loads((work / "run" / "config.json").read_text())["data_config"]["source"]
    assert saved == f"table:interactions={work}/data/events.csv.gz,items={work}/data/items.csv"

    def evaluate():
        return subprocess.run([sys.executable, "-m", "tfrec.evaluate", f"--run_dir={work / 'run'}"],
                              cwd=elsewhere, env=subprocess_env() | {"PYTHONPATH": str(REPO_ROOT)},
                              capture_output=True, text=True, timeout=300)

    done = evaluate()
    assert done.returncode == 0, done.stderr[-3000:]
    expected = json.loads((work / "run" / "metrics.json").read_text())
    printed = json.loads(done.stdout)
    assert printed == pytest.approx({k: expected[k] for k in printed}, abs=1e-6)
    (work / "data" / "events.csv.gz").rename(work / "data" / "moved.csv.gz")
    failed = evaluate()
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert failed.stderr.strip().splitlines() == [
        f"tfrec.evaluate: error: {work}/data/events.csv.gz: file not found"]
