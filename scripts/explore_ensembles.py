"""Seed ensembles and a transition-count prior over finished retrieval runs.

Loads run directories written by `tfrec.train` (or `tfrec.Trainer.fit`) on
the same data (e.g. one config under several seeds), scores the whole
catalogue for the validation and test users as `tfrec.evaluate` does (the
protocol of docs/evaluation.md), and prints HR@10 / NDCG@10 on both splits for:

- each run alone;
- ensembles: the mean of the runs' scores over every subset of k runs,
  averaged over the subsets, for each k (k = 1: the mean of single runs);
- the same plus `weight * log(1 + T)`, T being the
  `tfrec.baselines.Transitions` scores fit on the train split: a hybrid of
  the model with item-to-item counts.

The scores are cosine similarities, so a weight of 0.1 lets one log-count
step move an item as far as a cosine difference of 0.1. Run it niced:

    nice -n 10 .venv/bin/python scripts/explore_ensembles.py \\
        --run_dirs=runs/seed0,runs/seed1,runs/seed2 --prior_weights=0.03,0.05,0.1
"""

import itertools

import numpy as np
from absl import app, flags

from tfrec import baselines
from tfrec.config import require
from tfrec.data import schema
from tfrec.evaluation import metrics, protocol
from tfrec.training import load_run_data

SPLITS = ("valid", "test")


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the script's flags in `flag_values`."""
    flags.DEFINE_list("run_dirs", [], "Retrieval run directories trained on the same data.", flag_values=flag_values)
    flags.DEFINE_list("prior_weights", ["0.03", "0.05", "0.1"], "Weights of the log transition-count prior.",
                      flag_values=flag_values)


def held_out_scores(run_dirs):
    """Catalogue scores of each run: ({split: float32 [runs, n, items + 1]}, {split: HeldOut}, train).

    Raises:
        tfrec.config.ConfigError: a run is not a retrieval run, or holds other held-out examples than the first.
    """
    scores = {name: [] for name in SPLITS}
    first = None
    for directory in run_dirs:
        run, data = load_run_data(directory)
        task = run.model_config.task
        require(task in protocol.RANKS_CATALOGUE,
                f"--run_dirs: {directory} is a {task} run; expected retrieval or multitask")
        held_out = {name: protocol.HeldOut.from_split(data.split, data.vocab, name, data.examples) for name in SPLITS}
        targets = [held_out[name].examples[schema.TARGET_ITEM_ID] for name in SPLITS]
        first = first or (directory, targets)
        require(all(np.array_equal(a, b) for a, b in zip(targets, first[1])),
                f"--run_dirs: {directory} holds other held-out examples than {first[0]}; "
                "expected runs on the same data and split")
        for name in SPLITS:
            scores[name].append(run.model.score_catalogue(held_out[name].examples))
    return {name: np.stack(values) for name, values in scores.items()}, held_out, data.examples["train"]


def hr_ndcg(scores, held_out):
    """(HR@10, NDCG@10) of `scores` [n, items + 1] on a `HeldOut` set."""
    examples = held_out.examples
    result = metrics.ranking_metrics(scores, examples[schema.TARGET_ITEM_ID], examples[schema.HISTORY_ITEM_IDS],
                                     ks=(10,), exclude=held_out.prior)
    return result["HR@10"], result["NDCG@10"]


def mean_figures(score_sets, held_out):
    """Mean (HR@10, NDCG@10) over a list of score matrices."""
    return tuple(np.mean([hr_ndcg(scores, held_out) for scores in score_sets], axis=0))


def run(flag_values: flags.FlagValues = flags.FLAGS) -> list:
    """Prints the table of the parsed `flag_values`; returns its rows
    (label, (valid HR@10, valid NDCG@10), (test HR@10, test NDCG@10))."""
    run_dirs = flag_values.run_dirs
    require(len(run_dirs) >= 1, "--run_dirs: give at least one run directory")
    weights = [float(weight) for weight in flag_values.prior_weights]
    scores, held_out, train = held_out_scores(run_dirs)
    rows = []
    for index, directory in enumerate(run_dirs):
        rows.append((directory, *(hr_ndcg(scores[name][index], held_out[name]) for name in SPLITS)))
    transitions = baselines.Transitions(scores["test"].shape[-1] - 1).fit(train)
    priors = {name: np.log1p(transitions.score(held_out[name].examples)) for name in SPLITS}
    runs = range(len(run_dirs))
    for k in runs:
        subsets = list(itertools.combinations(runs, k + 1))
        for weight in [0.0, *weights]:
            label = f"{k + 1}-run ensembles ({len(subsets)} subsets)"
            rows.append((label + (f" + {weight} x log(1 + transitions)" if weight else ""), *(
                mean_figures([scores[name][list(subset)].mean(axis=0) + weight * priors[name]
                              for subset in subsets], held_out[name])
                for name in SPLITS)))
    print("| scores | valid HR@10 | valid NDCG@10 | test HR@10 | test NDCG@10 |")
    print("|---|---|---|---|---|")
    for label, (valid_hr, valid_ndcg), (test_hr, test_ndcg) in rows:
        print(f"| {label} | {valid_hr:.4f} | {valid_ndcg:.4f} | {test_hr:.4f} | {test_ndcg:.4f} |")
    return rows


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    run(flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    app.run(main)
