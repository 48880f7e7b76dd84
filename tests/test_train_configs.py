"""Every flagfile in configs/ parses into valid training flags and a valid
ModelConfig; the MovieLens ones fit the real data."""

import pytest
from train_helpers import REPO_ROOT, default_flags_after_test, parse_flags  # noqa: F401 (autouse fixture)

from tfrec import train  # noqa: F401 (defines the training flags)
from tfrec.data import flags as data_flags
from tfrec.training import checks, model_flags

CONFIGS = sorted((REPO_ROOT / "configs").glob("*.flags"))


@pytest.mark.parametrize("flagfile", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_config_parses_into_valid_flags(flagfile):
    values = parse_flags("--run_dir=unused", flagfile=flagfile)
    checks.check_training_flags(values)
    checks.check_trainable(values.encoder_trainable)
    config = model_flags.model_config(values)
    assert config.task in flagfile.stem or flagfile.stem in ("synthetic_tiny", "demo")


@pytest.mark.integration
@pytest.mark.parametrize("flagfile", [p for p in CONFIGS if p.stem != "synthetic_tiny"],
                         ids=lambda path: path.stem)
def test_movielens_config_fits_the_data(flagfile, ml100k_dir):
    values = parse_flags("--run_dir=unused", f"--source=movielens:{ml100k_dir}", flagfile=flagfile)
    dataset, _, vocab, examples = data_flags.from_flags()
    checks.check_data(model_flags.model_config(values), dataset, vocab, examples, checks.parse_ks(values.eval_ks))
    assert vocab.num_items == 1682 and len(examples["test"]["target_item_id"]) == 943
