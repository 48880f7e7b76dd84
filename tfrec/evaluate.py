"""Recomputes the held-out metrics of a finished training run.

    python -m tfrec.evaluate --run_dir=runs/retrieval [--eval_split=test|valid]

Rebuilds the model from the run directory (`tfrec.models.run.load_run`),
reloads the data with the run's data flags (a data flag given on this
command line wins, e.g. to point `--source` at a moved copy), checks that the
data gives the run's vocabulary, and prints the GUIDE §3 metrics as JSON: the
same numbers as the run's `metrics.json` (test) or its "valid" entry.

Example:

>>> from absl import flags
>>> flags.FLAGS(["evaluate", "--run_dir=runs/retrieval"])
>>> evaluate(flags.FLAGS)["HR@10"]
0.2153
"""

import json

from absl import app, flags

from tfrec.data import flags as data_flags
from tfrec.models.run import load_run
from tfrec.training import checks, protocol, run_dir  # noqa: F401 (defines --run_dir)

flags.DEFINE_enum("eval_split", "test", ["test", "valid"],
                  "Which held-out examples to evaluate (--run_dir names the run).")

FLAGS = flags.FLAGS


def load_run_data(directory, flag_values=FLAGS):
    """Loads the run at `directory` and the data it was trained on.

    The run's data flags apply unless given on the command line (e.g. to
    point `--source` at a moved copy).

    Returns:
        (run, split, vocab, examples): a `tfrec.models.run.Run`, and the data
        layer's `Split`, `Vocabulary` and `build_examples` dict.

    Raises:
        checks.ConfigError: the data no longer matches the run's vocabulary.
    """
    run = load_run(directory)
    for flag in flag_values.get_flags_for_module(data_flags):
        if not flag.present and flag.name in run.flags:
            flag.value = run.flags[flag.name]
    _, split, vocab, examples = data_flags.from_flags()
    checks.require(
        vocab.item_ids == run.vocab.item_ids and vocab.num_users == run.vocab.num_users,
        f"--source={flag_values.source}: the data gives a different vocabulary than the run at "
        f"{run.directory} ({vocab.num_items} items, {vocab.num_users} users vs {run.vocab.num_items} "
        f"items, {run.vocab.num_users} users)",
    )
    return run, split, vocab, examples


def evaluate(flag_values=FLAGS):
    """Evaluates the run at `--run_dir` on `--eval_split`.

    Returns:
        dict of metric name -> float.

    Raises:
        checks.ConfigError: the data no longer matches the run's vocabulary.
    """
    checks.require(flag_values.run_dir, "--run_dir is required")
    run, split, vocab, examples = load_run_data(flag_values.run_dir, flag_values)
    held_out = protocol.HeldOut.from_split(split, vocab, flag_values.eval_split, examples)
    ks = checks.parse_ks(run.flags["eval_ks"])
    return protocol.evaluate_model(run.model, held_out, run.config, ks, run.flags["eval_batch_size"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    print(json.dumps(evaluate(FLAGS), indent=2, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
