"""Trains a tfrec model and writes a run directory: the command line of `tfrec.Trainer`.

    python -m tfrec.train --flagfile=configs/ml100k_retrieval.flags --run_dir=runs/retrieval

Flags: one per field of `tfrec.data.DataConfig` (`--source`, `--split`,
`--history_length`, ...), of `tfrec.models.ModelConfig` (`--task`,
`--encoder`, `--embedding_dim`, ...) and of `tfrec.training.TrainConfig`
(`--epochs`, `--batch_size`, `--learning_rate`, ...), each named as the field
(`--seed` sets both the model's and the trainer's), plus `--run_dir`;
`--help` lists them by config. Everything is checked before training
starts. A killed run resumes from `DIR/checkpoints` when the same command is
rerun. The files of the run directory are described in
`tfrec.training.run_dir`. `--warm_start_from=RUN_DIR` starts from a
finished run's weights on new data (`tfrec.training.warm_start`). Off a terminal, training prints one line per
epoch; the last line sums the run up (test metrics, epochs, time).

Example:

>>> values = flags.FlagValues()
>>> define_flags(values)
>>> values(["train", "--flagfile=configs/synthetic_tiny.flags", "--run_dir=/tmp/run"])
>>> sorted(train(values))[:3]
['HR@10', 'HR@100', 'MRR']
"""


from absl import flags

from tfrec import quiet

quiet.configure(__name__)  # before TensorFlow is imported
from tfrec import config_flags, disk_space  # noqa: E402
from tfrec.config import ConfigError  # noqa: E402
from tfrec.data import DataConfig, DataError, prepare  # noqa: E402
from tfrec.evaluation import verdict  # noqa: E402
from tfrec.models import ModelConfig  # noqa: E402
from tfrec.training import RunDirectory, TrainConfig, Trainer  # noqa: E402
from tfrec.training.trainer import format_metrics  # noqa: E402
from tfrec.training.warm_start import run_model_config, warm_start_model  # noqa: E402

CONFIGS = (DataConfig, ModelConfig, TrainConfig)


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the flags of `python -m tfrec.train` in `flag_values`."""
    flags.DEFINE_string("run_dir", None, "Directory of the run: config, metrics, weights, checkpoints, "
                        "TensorBoard logs.", flag_values=flag_values)
    flags.DEFINE_string(
        "warm_start_from", None,
        "Finished run directory to start from: its model config (model flags given here may change only training "
        "fields such as --dropout or --id_dropout) and weights; known items and users keep their rows, new items "
        "start from their text; fresh optimizer, a short schedule with --epochs=0.", flag_values=flag_values)
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
            `TrainingDivergedError`, one of them, when the loss becomes NaN.
        disk_space.StorageError: the run directory is not writable (checked
            first), or has no room for a backup of the training state.
    """
    if not flag_values.run_dir:
        raise ConfigError("--run_dir is required")
    run = RunDirectory(flag_values.run_dir)  # checked before minutes of data loading and encoding
    disk_space.require_writable(run.path, f"--run_dir={run.path}")
    with config_flags.named_as_flags():
        data_config, model_config, train_config = configs_from_flags(flag_values)
        trainer = Trainer(train_config)
        try:
            data = prepare(data_config)
        except (DataError, OSError) as error:
            given = f"--source={data_config.source}: " if data_config.source else ""
            raise ConfigError(f"{given}{error}") from error
        if flag_values.warm_start_from:
            start = flag_values.warm_start_from
            model_config = run_model_config(start).replace(**config_flags.given_values(ModelConfig, flag_values))
            model = warm_start_model(start, data, model_config.validate(), strategy=trainer.strategy)
        else:
            model = trainer.build_model(model_config, data)
        return trainer.fit(model, data, run_dir=run).metrics


def main(argv):
    metrics = train(flags.FLAGS)
    print(f"tfrec.train: {flags.FLAGS.run_dir}: test {format_metrics(metrics)}")
    print(verdict.report(metrics))


if __name__ == "__main__":
    config_flags.run(main, config_flags.help_groups("run flags", config_flags.defined(define_flags), CONFIGS),
                     errors=(ConfigError, disk_space.StorageError))
