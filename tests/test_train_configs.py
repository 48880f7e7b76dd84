"""Every flagfile in configs/ parses into valid DataConfig, ModelConfig and
TrainConfig; the MovieLens ones fit the real data."""

import pytest
from train_helpers import REPO_ROOT, train_flags

from tfrec import train
from tfrec.data import DataConfig, prepare
from tfrec.evaluation import protocol
from tfrec.models import ModelConfig
from tfrec.training import TrainConfig, checks

CONFIGS = sorted((REPO_ROOT / "configs").glob("*.flags"))


@pytest.mark.parametrize("flagfile", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_config_parses_into_valid_configs(flagfile):
    values = train_flags("--run_dir=unused", flagfile=flagfile)
    data_config, model_config, train_config = train.configs_from_flags(values)
    assert isinstance(data_config, DataConfig) and isinstance(model_config, ModelConfig)
    assert isinstance(train_config, TrainConfig)
    for config in (data_config, model_config, train_config):
        assert type(config).from_dict(config.to_dict()) == config  # what run directories store
    assert model_config.task in flagfile.stem or flagfile.stem in ("synthetic_tiny", "demo")
    checks.check_monitor(train_config.monitor_for(model_config), protocol.metric_names(model_config,
                                                                                      train_config.eval_ks))


@pytest.mark.integration
@pytest.mark.parametrize("flagfile", [p for p in CONFIGS if p.stem.startswith(("ml100k", "demo"))],
                         ids=lambda path: path.stem)
def test_movielens_config_fits_the_data(flagfile, ml100k_dir):
    values = train_flags("--run_dir=unused", f"--source=movielens:{ml100k_dir}", flagfile=flagfile)
    data_config, model_config, train_config = train.configs_from_flags(values)
    data = prepare(data_config)
    checks.check_data(model_config, data, train_config.eval_ks)
    assert data.vocab.num_items == 1682 and len(data.examples["test"]["target_item_id"]) == 943


@pytest.mark.integration
def test_office_config_fits_the_data(office_dir):
    values = train_flags("--run_dir=unused", flagfile=REPO_ROOT / "configs" / "office_retrieval.flags")
    data_config, model_config, train_config = train.configs_from_flags(values)
    source = data_config.source.replace("../shared/data/amazon-office", str(office_dir))
    data = prepare(data_config.replace(source=source))
    checks.check_data(model_config, data, train_config.eval_ks)
    assert data.vocab.num_items == 2420 and len(data.examples["test"]["target_item_id"]) == 4905
    # Every item has a text; the brand and category path are part of it.
    assert all(data.item_texts[1:]) and "Office Electronics" in data.item_texts[1]
