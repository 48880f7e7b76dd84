"""Trains a tfrec model and writes a run directory: the command line of `tfrec.Trainer`.

    python -m tfrec.train --flagfile=configs/ml100k_retrieval.flags --run_dir=runs/retrieval

Flags: one per field of `tfrec.data.DataConfig` (`--source`, `--split`,
`--history_length`, ...), of `tfrec.models.ModelConfig` (`--task`,
`--encoder`, `--embedding_dim`, ...) and of `tfrec.training.TrainConfig`
(`--epochs`, `--batch_size`, `--learning_rate`, ...), each named as the field
(`--seed` sets both the model's and the trainer's), plus `--run_dir`.
Everything is checked before training starts. A killed run resumes from
`DIR/checkpoints` when the same command is rerun. The files of the run
directory are described in `tfrec.training.run_dir`.

Example:

>>> values = flags.FlagValues()
>>> define_flags(values)
>>> values(["train", "--flagfile=configs/synthetic_tiny.flags", "--run_dir=/tmp/run"])
>>> sorted(train(values))[:3]
['HR@10', 'HR@100', 'MRR']
"""

import sys

from absl import app, flags

from tfrec import config_flags
from tfrec.config import ConfigError
from tfrec.data import DataConfig, DataError, prepare
from tfrec.models import ModelConfig
from tfrec.training import TrainConfig, Trainer
from tfrec.training.run_dir import check_run_directory

CONFIGS = (DataConfig, ModelConfig, TrainConfig)


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the flags of `python -m tfrec.train` in `flag_values`."""
    flags.DEFINE_string("run_dir", None, "Directory of the run: config, metrics, weights, checkpoints, "
                        "TensorBoard logs.", flag_values=flag_values)
    for cls in CONFIGS:
        config_flags.define_flags(cls, flag_values)


def configs_from_flags(flag_values: flags.FlagValues) -> tuple:
    """The validated (DataConfig, ModelConfig, TrainConfig) of the parsed flags.

    Raises:
        ConfigError: naming the flag and value.
    """
    return tuple(config_flags.from_flags(cls, flag_values) for cls in CONFIGS)


def train(flag_values: flags.FlagValues = flags.FLAGS) -> dict:
    """Runs the training the parsed `flag_values` configure.

    Returns:
        dict, the contents of `DIR/metrics.json`.

    Raises:
        ConfigError: a flag value (or its combination with the data) is
            invalid, named as its flag; raised before any training step.
    """
    if not flag_values.run_dir:
        raise ConfigError("--run_dir is required")
    check_run_directory(flag_values.run_dir)  # before minutes of data loading and encoding
    try:
        data_config, model_config, train_config = configs_from_flags(flag_values)
        trainer = Trainer(train_config)
        try:
            data = prepare(data_config)
        except (DataError, OSError) as error:
            given = f"--source={data_config.source}: " if data_config.source else ""
            raise ConfigError(f"{given}{error}") from error
        model = trainer.build_model(model_config, data)
        return trainer.fit(model, data, run_dir=flag_values.run_dir).metrics
    except ConfigError as error:
        raise ConfigError(config_flags.flag_message(error)) from error


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        train(flags.FLAGS)
    except ConfigError as error:
        sys.exit(f"tfrec.train: error: {error}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
