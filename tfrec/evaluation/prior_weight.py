"""The weight of the transition-count prior, chosen on the validation split.

A model that holds a `TransitionPrior` ranks by `q . e + w * log(1 + E)`.
`choose_prior_weight` scores the validation examples once with the network
alone and once for the evidence `E` of each form (`TransitionPrior.FORMS`:
raw counts, or each successor's share), then ranks the validation targets
(the protocol of docs/evaluation.md) for every form and weight of a grid and
keeps the best by validation NDCG@10, then HR@10; ties go to the smaller
weight and the first form, and 0 (the network alone) is always a candidate,
so the prior is used only where it helps on held-out data.

Example:

>>> choice = choose_prior_weight(model, tfrec.evaluation.protocol.HeldOut.from_data(data, "valid"))
>>> choice.form, choice.weight, choice.table[choice.form][choice.weight]["NDCG@10"]  # doctest: +SKIP
('counts', 0.1, 0.3443)
"""

import dataclasses

import numpy as np

from tfrec.data import schema
from tfrec.evaluation import metrics
from tfrec.models.transition_prior import FORMS

WEIGHTS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
"""Candidate weights: the scores are cosines in [-1, 1], so 0.1 lets one log-count step move an item as far as
a cosine difference of 0.1, and 2 lets the counts decide wherever they hold evidence."""
CRITERIA = ("NDCG@10", "HR@10")


@dataclasses.dataclass
class PriorWeightChoice:
    """The chosen form and weight, and the validation figures of every candidate.

    Attributes:
        form: the chosen form of the evidence (`TransitionPrior.FORMS`).
        weight: the chosen weight (0: the network alone).
        table: form -> weight -> validation metrics (`metrics.metrics_from_ranks`).
    """

    form: str
    weight: float
    table: dict

    def summary(self) -> str:
        """One line: the choice and the validation NDCG@10 / HR@10 with and without the prior."""
        alone, chosen = self.table[self.form][0.0], self.table[self.form][self.weight]
        return (f"transition prior weight {self.weight:g}, form {self.form} (validation NDCG@10 "
                f"{chosen['NDCG@10']:.4f}, HR@10 {chosen['HR@10']:.4f}; network alone {alone['NDCG@10']:.4f}, "
                f"{alone['HR@10']:.4f})")


def choose_prior_weight(model, held_out, weights=WEIGHTS, ks=(10,), batch_size: int = 1024,
                        forms=FORMS) -> PriorWeightChoice:
    """Picks the prior's form and weight on `held_out` (the validation set).

    Args:
        model: a retrieval or multitask `Recommender` with a `transition_prior`.
        held_out: `tfrec.evaluation.protocol.HeldOut` of the validation split.
        weights: candidate weights (0 is added when missing).
        ks: cut-offs of the table's metrics (10 is always included).
        batch_size: examples scored at once.
        forms: candidate forms of the evidence.

    Returns:
        `PriorWeightChoice`; the model is left with its prior's form and weight as they were.
    """
    weights = sorted({0.0, *map(float, weights)})
    ks = tuple(sorted({10, *ks}))
    prior = model.transition_prior
    saved = float(prior.weight.numpy()), prior.form
    examples = held_out.examples
    count = len(examples[schema.TARGET_ITEM_ID])
    ranks = {form: {weight: [] for weight in weights} for form in forms}
    prior.weight.assign(0.0)
    try:
        for start in range(0, count, batch_size):
            batch = {name: np.asarray(values)[start:start + batch_size] for name, values in examples.items()}
            network = np.asarray(model.score_catalogue(batch))
            excluded = held_out.excluded_history(batch)
            for form in forms:
                prior.set_form(form)
                evidence = np.log1p(np.asarray(prior.evidence(batch[schema.HISTORY_ITEM_IDS])))
                for weight in weights:
                    ranks[form][weight].append(metrics.target_ranks(
                        network + weight * evidence, batch[schema.TARGET_ITEM_ID], excluded,
                        exclude=held_out.prior[start:start + batch_size]))
    finally:
        prior.weight.assign(saved[0])
        prior.set_form(saved[1])
    table = {form: {weight: metrics.metrics_from_ranks(np.concatenate(ranks[form][weight]), ks) for weight in weights}
             for form in forms}
    form, weight = max(((form, weight) for form in forms for weight in weights),
                       key=lambda pair: (*(round(table[pair[0]][pair[1]][c], 6) for c in CRITERIA), -pair[1],
                                         -forms.index(pair[0])))
    return PriorWeightChoice(form, weight, table)
