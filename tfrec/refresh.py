"""The periodic refresh of a served model: the command line of `tfrec.refreshing.refresh`.

    python -m tfrec.refresh --serving_run=runs/retrieval --source=table:interactions=logs_w49.csv,items=items.csv \\
        --run_dir=runs/retrieval-w49 --export_base=exports --model_name=retrieval [--min_improvement=0.005]

Loads the served run's own logs again and appends the new ones (`--source`;
the other data flags default to the served run's, e.g. its column names),
holds out the newest `--test_fraction` of the new logs' time span, measures
the served model there (its catalogue grown with the new items), fine-tunes
it on the rest of the new logs and the behaviours its own split held out
(warm start: fresh optimizer, short schedule;
the train flags given here apply), measures it again, and exports it as the
next version of `--model_name` only when it passes the gate; both figures go
into that version's model card and `RUN_DIR/refresh.json`. A server polling
`EXPORT_BASE/MODEL_NAME` swaps to the new version by itself. Logs that
overlap the served run's training window are refused unless
`--allow_overlap`. Exit status 0 whether or not the gate passed (the last line
says which); 1 on an error.

Flags: one per field of `tfrec.refreshing.RefreshConfig` (`--serving_run`,
`--run_dir`, `--model_name`, `--min_improvement`, ...), of
`tfrec.data.DataConfig` and of `tfrec.training.TrainConfig`.

Example:

>>> values = flags.FlagValues()
>>> define_flags(values)
>>> values(["refresh", "--serving_run=runs/retrieval", "--source=table:interactions=logs_w49.csv,items=items.csv",
...         "--run_dir=runs/retrieval-w49", "--model_name=retrieval"])
>>> run(values).verdict                                                     # doctest: +SKIP
"""

from absl import flags

from tfrec import quiet

quiet.configure(__name__)  # before TensorFlow is imported
from tfrec import config_flags  # noqa: E402
from tfrec.config import ConfigError  # noqa: E402
from tfrec.data import DataConfig, DataError  # noqa: E402
from tfrec.refreshing import RefreshConfig, RefreshResult, refresh  # noqa: E402
from tfrec.training import RunDirectory, TrainConfig  # noqa: E402

CONFIGS = (DataConfig, TrainConfig)


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the flags of `python -m tfrec.refresh` in `flag_values`."""
    for cls in (RefreshConfig, *CONFIGS):
        config_flags.define_flags(cls, flag_values)
    flags.mark_flags_as_required(["serving_run", "run_dir", "model_name", "source"], flag_values=flag_values)


def run(flag_values: flags.FlagValues = flags.FLAGS) -> RefreshResult:
    """Runs the refresh the parsed `flag_values` describe.

    Raises:
        ConfigError: naming the flag at fault; raised before training.
    """
    with config_flags.named_as_flags(DataError):
        saved = RunDirectory(flag_values.serving_run).read_config()
        new_logs = DataConfig.from_dict(saved["data_config"]).replace(
            **config_flags.given_values(DataConfig, flag_values)).validate()
        return refresh(config_flags.from_flags(RefreshConfig, flag_values), new_logs,
                       config_flags.from_flags(TrainConfig, flag_values))


def main(argv):
    result = run(flags.FLAGS)
    exported = f" (version {result.exported.version}: {result.exported.path})" if result.exported else ""
    print(f"tfrec.refresh: {result.verdict}{exported}")


if __name__ == "__main__":
    names = config_flags.defined(define_flags)
    config_flags.run(main, config_flags.help_groups("refresh flags", names, CONFIGS), errors=(ConfigError, OSError))
