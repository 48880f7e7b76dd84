"""The evaluation protocol applied to a model: full-catalogue ranking metrics
and rating / click metrics on held-out examples (the evaluation protocol of docs/evaluation.md).

Every catalogue item is a candidate; the items the user interacted with
before the target are excluded. Because example histories are truncated to
the last `history_length` behaviours, the exclusion uses the user's complete
prior items (`prior_items`), not the history row.

Example:

>>> test = HeldOut.from_split(split, vocab, "test", examples)
>>> evaluate_model(model, test, config, ks=(10, 100))
{'HR@10': 0.21, 'NDCG@10': 0.11, 'Recall@100': 0.64, 'MRR': 0.09, ...}
"""

import dataclasses

import numpy as np

from tfrec.data import schema
from tfrec.data.examples import prior_items
from tfrec.data.targets import TargetRule
from tfrec.evaluation import metrics

RANKS_CATALOGUE = ("retrieval", "multitask")
"""Tasks whose models score the whole catalogue (`score_catalogue`)."""
PREDICTS_TARGET = ("ranking", "multitask")
"""Tasks whose models predict the target's rating or click (`predict_target`)."""
@dataclasses.dataclass
class HeldOut:
    """Held-out examples and what the protocol needs around them.

    Attributes:
        name: "valid" or "test".
        examples: dict of numpy arrays keyed by schema feature names.
        prior: per-example items to exclude from the ranking (`prior_items`).
        num_items: catalogue size.
        rule: the `TargetRule` of the examples: whether every history item
            is excluded or only those of earlier targets (listed in `prior`).
    """

    name: str
    examples: dict
    prior: list
    num_items: int
    rule: TargetRule = TargetRule()

    @classmethod
    def from_split(cls, split, vocab, name, examples, rule: TargetRule = TargetRule()):
        """Builds the held-out set `name` from `build_examples` output `examples`."""
        return cls(name, examples[name], prior_items(split, vocab, name, examples[name], rule), vocab.num_items, rule)

    @classmethod
    def from_data(cls, data, name):
        """The held-out set `name` of `tfrec.data.PreparedData` or `StreamedData`."""
        return cls(name, data.examples[name], data.held_out_prior(name), data.vocab.num_items, data.target_rule)

    def excluded_history(self, batch):
        """The history rows `metrics.target_ranks` excludes for `batch`: all of them, or None when only
        earlier targets are excluded (`prior` lists them)."""
        return batch[schema.HISTORY_ITEM_IDS] if self.rule.excludes_every_seen_item else None


def _rows(examples, start, stop):
    return {name: np.asarray(values)[start:stop] for name, values in examples.items()}


def click_negatives(examples, prior, num_items, seed=0):
    """The examples with each target replaced by a random unseen item.

    Each negative is drawn uniformly (seeded) among the items that are neither
    the target nor in the example's prior items.
    """
    rng = np.random.default_rng(seed)
    targets = np.asarray(examples[schema.TARGET_ITEM_ID])
    negatives = np.empty_like(targets)
    for row, (target, seen) in enumerate(zip(targets.tolist(), prior)):
        excluded = set(seen.tolist()) | {target}
        if len(excluded) >= num_items:
            raise ValueError(f"example {row}: every catalogue item is already seen; no negative to draw")
        candidate = int(rng.integers(1, num_items + 1))
        while candidate in excluded:
            candidate = int(rng.integers(1, num_items + 1))
        negatives[row] = candidate
    return dict(examples, **{schema.TARGET_ITEM_ID: negatives})


def evaluate_model(model, held_out, config, ks=(10, 100), batch_size=1024):
    """Computes the metrics of `model` on a `HeldOut` set.

    - retrieval and multitask: HR@K, Recall@K, NDCG@K, MRR over the full
      catalogue (`model.score_catalogue`);
    - ranking and multitask, rating target: RMSE, MAE of `model.predict_target`
      against the target ratings;
    - ranking and multitask, click target: AUC, LogLoss of `model.predict_target`
      on the targets (label 1) and on one random unseen item per example
      (label 0, `click_negatives`).

    Args:
        model: a tfrec model (see `tfrec.models`).
        held_out: `HeldOut`.
        config: the model's `ModelConfig` (task, ranking_target).
        ks: ranking cut-offs.
        batch_size: examples scored at once.

    Returns:
        dict of floats.
    """
    examples, prior = held_out.examples, held_out.prior
    count = len(examples[schema.TARGET_ITEM_ID])
    result = {}
    if config.task in RANKS_CATALOGUE:
        ranks = []
        for start in range(0, count, batch_size):
            batch = _rows(examples, start, start + batch_size)
            ranks.append(metrics.target_ranks(
                np.asarray(model.score_catalogue(batch)), batch[schema.TARGET_ITEM_ID],
                held_out.excluded_history(batch), exclude=prior[start:start + batch_size]))
        result.update(metrics.metrics_from_ranks(np.concatenate(ranks), ks))
    if config.task in PREDICTS_TARGET:
        predict = lambda rows: np.concatenate([  # noqa: E731
            np.asarray(model.predict_target(_rows(rows, start, start + batch_size))).reshape(-1)
            for start in range(0, count, batch_size)])
        if config.ranking_target == "rating":
            result.update(metrics.rating_metrics(predict(examples), examples[schema.TARGET_RATING]))
        else:
            negatives = click_negatives(examples, prior, held_out.num_items)
            probabilities = np.concatenate([predict(examples), predict(negatives)])
            labels = np.concatenate([np.ones(count), np.zeros(count)])
            result.update(metrics.click_metrics(probabilities, labels))
    return {name: float(value) for name, value in result.items()}


def metric_names(config, ks=(10, 100)):
    """The names of the metrics `evaluate_model` returns for a model of `config`."""
    names = []
    if config.task in RANKS_CATALOGUE:
        names += metrics.metrics_from_ranks(np.zeros(1, dtype=np.int64), ks)
    if config.task in PREDICTS_TARGET:
        pair = np.array([0.25, 0.75]), np.array([0.0, 1.0])
        names += metrics.rating_metrics(*pair) if config.ranking_target == "rating" else metrics.click_metrics(*pair)
    return names
