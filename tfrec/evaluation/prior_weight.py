"""The weight of the transition-count prior, chosen on the validation split.

A model that holds a `TransitionPrior` ranks by `q . e + w * log(1 + E)`.
`choose_prior_weight` scores the validation examples once with the network
alone and once for the count evidence `E`, then ranks the validation targets
(the protocol of docs/evaluation.md) for every weight of a grid and keeps the
best by validation NDCG@10, then HR@10; ties go to the smaller weight, and 0
(the network alone) is always a candidate, so the prior is used only where it
helps on held-out data.

Example:

>>> choice = choose_prior_weight(model, tfrec.evaluation.protocol.HeldOut.from_data(data, "valid"))
>>> choice.weight, choice.table[choice.weight]["NDCG@10"]  # doctest: +SKIP
(0.1, 0.3443)
"""

import dataclasses

import numpy as np

from tfrec.data import schema
from tfrec.evaluation import metrics

WEIGHTS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
"""Candidate weights: the scores are cosines in [-1, 1], so 0.1 lets one log-count step move an item as far as
a cosine difference of 0.1, and 2 lets the counts decide wherever they hold evidence."""
CRITERIA = ("NDCG@10", "HR@10")


@dataclasses.dataclass
class PriorWeightChoice:
    """The chosen weight and the validation figures of every candidate.

    Attributes:
        weight: the chosen weight (0: the network alone).
        table: weight -> validation metrics (`metrics.metrics_from_ranks`).
    """

    weight: float
    table: dict

    def summary(self) -> str:
        """One line: the choice and the validation NDCG@10 / HR@10 with and without the prior."""
        alone, chosen = self.table[0.0], self.table[self.weight]
        return (f"transition prior weight {self.weight:g} (validation NDCG@10 {chosen['NDCG@10']:.4f}, HR@10 "
                f"{chosen['HR@10']:.4f}; network alone {alone['NDCG@10']:.4f}, {alone['HR@10']:.4f})")


def choose_prior_weight(model, held_out, weights=WEIGHTS, ks=(10,), batch_size: int = 1024) -> PriorWeightChoice:
    """Picks the prior's weight on `held_out` (the validation set).

    Args:
        model: a retrieval or multitask `Recommender` with a `transition_prior`.
        held_out: `tfrec.evaluation.protocol.HeldOut` of the validation split.
        weights: candidate weights (0 is added when missing).
        ks: cut-offs of the table's metrics (10 is always included).
        batch_size: examples scored at once.

    Returns:
        `PriorWeightChoice`; the model is left with its prior weight as it was.
    """
    weights = sorted({0.0, *map(float, weights)})
    ks = tuple(sorted({10, *ks}))
    prior = model.transition_prior
    saved = float(prior.weight.numpy())
    examples = held_out.examples
    count = len(examples[schema.TARGET_ITEM_ID])
    ranks = {weight: [] for weight in weights}
    prior.weight.assign(0.0)
    try:
        for start in range(0, count, batch_size):
            batch = {name: np.asarray(values)[start:start + batch_size] for name, values in examples.items()}
            network = np.asarray(model.score_catalogue(batch))
            evidence = np.log1p(np.asarray(prior.evidence(batch[schema.HISTORY_ITEM_IDS])))
            for weight in weights:
                ranks[weight].append(metrics.target_ranks(
                    network + weight * evidence, batch[schema.TARGET_ITEM_ID], held_out.excluded_history(batch),
                    exclude=held_out.prior[start:start + batch_size]))
    finally:
        prior.weight.assign(saved)
    table = {weight: metrics.metrics_from_ranks(np.concatenate(ranks[weight]), ks) for weight in weights}
    best = max(weights, key=lambda weight: (*(round(table[weight][c], 6) for c in CRITERIA), -weight))
    return PriorWeightChoice(best, table)
