"""Recomputes the held-out metrics of a finished training run (`tfrec.training.evaluate_run`).

    python -m tfrec.evaluate --run_dir=runs/retrieval [--eval_split=test|valid] [--source=...]

Rebuilds the model from the run directory, prepares the data with the run's
`DataConfig` (a data flag given on this command line wins, e.g. `--source`
pointing at a moved copy), checks that the data gives the run's vocabulary,
and prints the metrics of the evaluation protocol (docs/evaluation.md) as
JSON: the same numbers as the run's `metrics.json` (test) or its "valid"
entry; a one-line summary follows on standard error, then the run's model
beside the popularity, transitions and item-kNN baselines (validation and
test) and its verdict.
"""

import json
import sys

from absl import flags

from tfrec import quiet

quiet.configure(__name__)  # before TensorFlow is imported
from tfrec import config_flags  # noqa: E402
from tfrec.config import ConfigError  # noqa: E402
from tfrec.data import DataConfig, DataError  # noqa: E402
from tfrec.evaluation import verdict  # noqa: E402
from tfrec.training import RunDirectory, evaluate_run  # noqa: E402
from tfrec.training.trainer import format_metrics  # noqa: E402


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the flags of `python -m tfrec.evaluate` in `flag_values`."""
    flags.DEFINE_string("run_dir", None, "Directory of the finished training run.", flag_values=flag_values)
    flags.DEFINE_enum("eval_split", "test", ["test", "valid"], "Which held-out examples to evaluate.",
                      flag_values=flag_values)
    config_flags.define_flags(DataConfig, flag_values)
    flags.mark_flag_as_required("run_dir", flag_values=flag_values)


def evaluate(flag_values: flags.FlagValues = flags.FLAGS) -> dict:
    """Evaluates the run at `--run_dir` on `--eval_split`; data flags given override the run's."""
    with config_flags.named_as_flags():
        overrides = config_flags.given_values(DataConfig, flag_values)
        return evaluate_run(flag_values.run_dir, flag_values.eval_split, **overrides)


def main(argv):
    metrics = evaluate(flags.FLAGS)
    print(json.dumps(metrics, indent=2, sort_keys=True))
    print(f"tfrec.evaluate: {flags.FLAGS.run_dir} ({flags.FLAGS.eval_split}): {format_metrics(metrics)}",
          file=sys.stderr)
    print(verdict.report(RunDirectory(flags.FLAGS.run_dir).read_metrics()), file=sys.stderr)


if __name__ == "__main__":
    names = config_flags.defined(define_flags)
    config_flags.run(main, config_flags.help_groups("evaluation flags", names, (DataConfig,)),
                     errors=(ConfigError, DataError, OSError))
