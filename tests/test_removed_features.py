"""Saved configs of features since removed (the mixture-of-experts text adaptor, the behaviour-aware text
adaptation): a run that did not use them loads, its stale fields dropped, and so does one adapted (its weights
hold the adapted text vectors); one that used the mixture is refused."""

import json
import shutil

import pytest
from train_helpers import shared_run

from tfrec.config import ConfigError
from tfrec.models import ModelConfig
from tfrec.training import TrainConfig, load_run, run_dir

STALE_MODEL_FIELDS = {"text_adaptor": "linear", "text_experts": 8}
STALE_TRAIN_FIELDS = {"text_adaptation_steps": 200, "text_adaptation_layers": 1, "text_adaptation_batch_size": 32,
                      "text_adaptation_learning_rate": 5e-5, "text_adaptation_window": 3,
                      "text_adaptation_length": 64}
MIXTURE = {"text_adaptor": "moe", "text_experts": 8}
MIXTURE_REFUSED = (r"ModelConfig\.text_adaptor='moe' in a saved config: the mixture-of-experts text adaptor was "
                   r"removed from tfrec, .*retrain it")


def test_configs_saved_with_the_removed_fields_at_what_the_code_now_does_load_without_them():
    model_config = ModelConfig(encoder="tiny", embedding_dim=16)
    assert ModelConfig.from_dict({**model_config.to_dict(), **STALE_MODEL_FIELDS}) == model_config
    # Unused without the mixture, so any number of experts loads.
    assert ModelConfig.from_dict({**model_config.to_dict(), "text_experts": 3}) == model_config
    train_config = TrainConfig(epochs=3, learning_rate=1e-3)
    assert TrainConfig.from_dict({**train_config.to_dict(), **STALE_TRAIN_FIELDS}) == train_config
    assert "text_adaptor" not in model_config.to_dict() and "text_adaptation_steps" not in train_config.to_dict()


def test_a_config_saved_by_a_run_that_used_the_mixture_is_refused():
    with pytest.raises(ConfigError, match=MIXTURE_REFUSED):
        ModelConfig.from_dict({**ModelConfig(encoder="tiny").to_dict(), **MIXTURE})


def _saved_run_with(tmp_path, model_fields, train_fields):
    """A copy of the shared tiny run whose config.json also holds `model_fields` and `train_fields`,
    and the `config.json` record of the run itself."""
    directory = tmp_path / "run"
    shutil.copytree(shared_run()[0], directory)
    config_file = directory / run_dir.CONFIG
    record = json.loads(config_file.read_text())
    saved = {**record, "model_config": {**record["model_config"], **model_fields},
             "train_config": {**record["train_config"], **train_fields}}
    config_file.write_text(json.dumps(saved))
    return directory, record


def test_a_run_saved_with_the_removed_fields_at_their_defaults_loads_and_resumes(tmp_path):
    directory, record = _saved_run_with(tmp_path, STALE_MODEL_FIELDS, STALE_TRAIN_FIELDS)
    run = load_run(str(directory))
    assert run.model_config == ModelConfig.from_dict(record["model_config"])
    assert not set(STALE_TRAIN_FIELDS) & set(run.train_config)
    ids, _ = run.model.recommend([[run.vocab.item_ids[1]]], k=3)
    assert ids.shape == (1, 3)
    run_dir.RunDirectory(str(directory)).check_same_run(record)  # a rerun of the same configs resumes it


def test_a_run_that_used_the_mixture_is_refused_on_load_and_on_resume(tmp_path):
    directory, record = _saved_run_with(tmp_path, MIXTURE, {})
    with pytest.raises(ConfigError, match=f"^{directory}: " + MIXTURE_REFUSED):
        load_run(str(directory))
    with pytest.raises(ConfigError, match=MIXTURE_REFUSED):
        run_dir.RunDirectory(str(directory)).check_same_run(record)


@pytest.mark.parametrize("value", [[1, 2], None, "x"])
def test_a_config_section_that_is_no_object_is_refused_by_name(tmp_path, value):
    directory, _ = _saved_run_with(tmp_path, {}, {})
    config_file = directory / run_dir.CONFIG
    record = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**record, "model_config": value}))
    with pytest.raises(ConfigError, match=f"^{directory}: config.json model_config is {type(value).__name__}"):
        load_run(str(directory))
