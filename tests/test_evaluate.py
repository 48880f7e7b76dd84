"""`tfrec.evaluate` rebuilds a run's model and reproduces its metrics.json."""

import json

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
