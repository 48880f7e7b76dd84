"""`tfrec.evaluate` rebuilds a run's model and reproduces its metrics.json."""

import importlib.util
import json
import pathlib

import pytest
from train_helpers import default_flags_after_test, parse_flags, shared_run  # noqa: F401 (autouse fixture)

from tfrec import evaluate
from tfrec.models.run import load_run
from tfrec.training import checks


@pytest.fixture
def run_directory():
    return shared_run()[0]


def test_evaluate_reproduces_metrics_json(run_directory, capsys):
    expected = json.loads((run_directory / "metrics.json").read_text())
    parse_flags(f"--run_dir={run_directory}", flagfile="/dev/null")
    evaluate.main(["evaluate"])
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == set(expected) - {"valid", "examples_per_second", "wall_time_seconds", "epochs"}
    assert printed == pytest.approx({k: expected[k] for k in printed}, abs=1e-6)
    valid = evaluate.evaluate(parse_flags(f"--run_dir={run_directory}", "--eval_split=valid", flagfile="/dev/null"))
    assert valid == pytest.approx(expected["valid"], abs=1e-6)


def test_load_run_restores_model_vocabulary_and_texts(run_directory):
    run = load_run(run_directory)
    assert len(run.item_texts) == run.vocab.num_items + 1 and run.item_texts[0] == ""
    assert run.config.encoder == "tiny" and run.flags["epochs"] == 2
    assert run.model.item_embeddings([1, 2]).shape[0] == 2


def test_evaluate_refuses_data_with_another_vocabulary(run_directory):
    with pytest.raises(checks.ConfigError, match="different vocabulary"):
        evaluate.evaluate(parse_flags(f"--run_dir={run_directory}", "--source=synthetic:users=20,items=40",
                                      flagfile="/dev/null"))


def test_explore_ensembles_agrees_with_evaluate(run_directory, capsys):
    path = pathlib.Path(__file__).parents[1] / "scripts" / "explore_ensembles.py"
    spec = importlib.util.spec_from_file_location("explore_ensembles", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    expected = json.loads((run_directory / "metrics.json").read_text())
    parse_flags(f"--run_dirs={run_directory},{run_directory}", "--prior_weights=1", flagfile="/dev/null")
    script.main(["explore_ensembles"])
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    figures = {row[0].lstrip("| "): [float(value.rstrip(" |")) for value in row[1:]] for row in rows}
    single = [expected["valid"]["HR@10"], expected["valid"]["NDCG@10"], expected["HR@10"], expected["NDCG@10"]]
    assert figures[str(run_directory)] == pytest.approx(single, abs=1e-4)
    # Two copies of one run ensemble to that run.
    assert figures["1-run ensembles (2 subsets)"] == pytest.approx(single, abs=1e-4)
    assert figures["2-run ensembles (1 subsets)"] == pytest.approx(single, abs=1e-4)
    assert figures["1-run ensembles (2 subsets) + 1.0 x log(1 + transitions)"] != pytest.approx(single, abs=1e-4)
