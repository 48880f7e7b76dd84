"""Does a gate on the transition prior beat its one fitted weight? Measured on finished runs.

The `Recommender` ranks by `q . e + w * log(1 + E)` with one weight `w` chosen
on validation (`tfrec.evaluation.prior_weight`). A gate lets the weight depend
on the query. This script scores the validation and test examples of each run
once with the network alone and once for the prior's evidence (the run's own
form), splits the examples into buckets by a property known at serving time,
and chooses a weight per bucket on validation (the same grid, NDCG@10 then
HR@10): a gate by that property, as flexible as a learned one with one weight
per bucket and fitted the way the single weight is. Gates:

- `history`: the number of behaviours in the model's window (few behaviours,
  little for the network to read; many, more for the counts too);
- `popularity`: how often the last behaviour's item occurs in training (the
  counts of a popular item are reliable, a rare item's are noise);
- `evidence`: the strongest evidence among the candidates (max log(1 + E)):
  where the counts say little, the network should decide.

Buckets are the terciles of the property on validation. Prints, per run, the
single weight and each gate, validation and test HR@10 / NDCG@10.

    nice -n 10 .venv/bin/python scripts/explore_prior_gate.py --run_dirs=runs/ml,runs/shop
"""

import numpy as np
from absl import app, flags

from tfrec.data import schema
from tfrec.evaluation import metrics, protocol
from tfrec.evaluation.prior_weight import CRITERIA, WEIGHTS
from tfrec.training import load_run_data

flags.DEFINE_list("run_dirs", [], "Finished retrieval run directories (each with its transition prior).")
flags.DEFINE_integer("buckets", 3, "Buckets per gate (quantiles of the property on validation).", lower_bound=1)

SPLITS = ("valid", "test")
GATES = ("history", "popularity", "evidence")


def split_scores(model, held_out, batch_size=8192):
    """(network scores [n, items + 1], log(1 + evidence) [n, items + 1]) of a `HeldOut` set."""
    prior, saved = model.transition_prior, float(model.transition_prior.weight.numpy())
    examples = held_out.examples
    network, evidence = [], []
    prior.weight.assign(0.0)
    try:
        for start in range(0, len(examples[schema.TARGET_ITEM_ID]), batch_size):
            batch = {name: np.asarray(values)[start:start + batch_size] for name, values in examples.items()}
            network.append(np.asarray(model.score_catalogue(batch)))
            evidence.append(np.log1p(np.asarray(prior.evidence(batch[schema.HISTORY_ITEM_IDS]))))
    finally:
        prior.weight.assign(saved)
    return np.concatenate(network), np.concatenate(evidence)


def ranks_by_weight(network, evidence, held_out):
    """weight -> 0-based target ranks [n] of `network + weight * evidence`."""
    examples = held_out.examples
    excluded = held_out.excluded_history(examples)
    return {weight: metrics.target_ranks(network + weight * evidence, examples[schema.TARGET_ITEM_ID], excluded,
                                         exclude=held_out.prior) for weight in WEIGHTS}


def gate_property(gate, held_out, evidence, train_counts):
    """The gate's property per example [n]."""
    history = np.asarray(held_out.examples[schema.HISTORY_ITEM_IDS])
    if gate == "history":
        return (history > 0).sum(axis=1)
    if gate == "popularity":
        return train_counts[history[:, -1]]
    return evidence[:, 1:].max(axis=1)


def best_weight(ranks, mask):
    """The weight with the best validation NDCG@10, then HR@10, on the examples of `mask` (ties: smaller)."""
    def key(weight):
        figures = metrics.metrics_from_ranks(ranks[weight][mask], (10,))
        return (*(round(figures[c], 6) for c in CRITERIA), -weight)
    return max(ranks, key=key)


def figures(ranks):
    result = metrics.metrics_from_ranks(ranks, (10,))
    return f"{result['HR@10']:.4f} / {result['NDCG@10']:.4f}"


def explore(directory, buckets):
    """Table rows (label, valid figures, test figures) of one run."""
    run, data = load_run_data(directory)
    model = run.model
    held_out = {name: protocol.HeldOut.from_data(data, name) for name in SPLITS}
    train = data.examples["train"]
    train_counts = np.bincount(np.asarray(train[schema.TARGET_ITEM_ID]), minlength=data.vocab.num_items + 1)
    scored = {name: split_scores(model, held_out[name]) for name in SPLITS}
    ranks = {name: ranks_by_weight(*scored[name], held_out[name]) for name in SPLITS}
    everyone = {name: np.ones(len(ranks[name][0.0]), bool) for name in SPLITS}
    single = best_weight(ranks["valid"], everyone["valid"])
    rows = [("network alone", figures(ranks["valid"][0.0]), figures(ranks["test"][0.0])),
            (f"one weight ({single:g})", figures(ranks["valid"][single]), figures(ranks["test"][single]))]
    for gate in GATES:
        values = {name: gate_property(gate, held_out[name], scored[name][1], train_counts) for name in SPLITS}
        edges = np.unique(np.quantile(values["valid"], np.linspace(0, 1, buckets + 1)[1:-1]))
        bucket = {name: np.searchsorted(edges, values[name], side="right") for name in SPLITS}
        weights = [best_weight(ranks["valid"], bucket["valid"] == b) if np.any(bucket["valid"] == b) else single
                   for b in range(len(edges) + 1)]
        gated = {name: np.stack([ranks[name][w] for w in weights])[bucket[name], np.arange(len(bucket[name]))]
                 for name in SPLITS}
        label = f"gate by {gate} (edges {', '.join(f'{e:g}' for e in edges)}; weights {', '.join(map(str, weights))})"
        rows.append((label, figures(gated["valid"]), figures(gated["test"])))
    return rows


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS.run_dirs:
        raise app.UsageError("--run_dirs: give at least one run directory")
    for directory in flags.FLAGS.run_dirs:
        print(f"\n{directory}\n\n| ranking | valid HR@10 / NDCG@10 | test HR@10 / NDCG@10 |\n|---|---|---|")
        for label, valid, test in explore(directory, flags.FLAGS.buckets):
            print(f"| {label} | {valid} | {test} |")


if __name__ == "__main__":
    app.run(main)
