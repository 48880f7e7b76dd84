"""Reference figures of a run: simple baselines fitted and scored on the run's own split.

A model's HR@10 means little alone: `reference_metrics` gives, for the same
test targets, what popularity, item-to-item transitions and item-kNN reach
(models that rank the catalogue; item-kNN up to `MAX_KNN_ITEMS` items, its
similarity matrix being dense), or the training mean and user + item biases
(rating models). The evaluation step of `Trainer.fit` (`run_figures`)
stores them in `metrics.json` under "baselines"; the export's model card
shows them beside the model.

Example:

>>> data = tfrec.data.prepare(tfrec.data.DataConfig(source="synthetic:users=40,items=60"))
>>> sorted(reference_metrics(data, ModelConfig(task="retrieval")))
['item-kNN', 'popularity', 'transitions']
"""

from absl import logging

from tfrec.baselines.biases import Biases, GlobalMean
from tfrec.baselines.item_knn import ItemKNN
from tfrec.baselines.popularity import Popularity
from tfrec.baselines.transitions import Transitions
from tfrec.data import schema
from tfrec.evaluation import metrics, protocol

RANKING_BASELINES = {"popularity": Popularity, "transitions": Transitions, "item-kNN": ItemKNN}
MAX_KNN_ITEMS = 10_000
"""Largest catalogue item-kNN is fitted on: its (items + 1)^2 float32 similarity takes 400 MB there."""
BASELINE_FEATURES = (schema.USER_INDEX, schema.TARGET_ITEM_ID, schema.TARGET_TIMESTAMP, schema.TARGET_RATING)
"""The training-example columns the baselines fit on (no histories)."""
RATING_BASELINES = {
    "training mean": lambda vocab: GlobalMean(vocab.num_items),
    "user + item biases": lambda vocab: Biases(vocab.num_items, vocab.num_users),
}


def reference_metrics(data, model_config, ks: tuple = (10, 100), split: str = "test") -> dict:
    """Baseline name -> its metrics on `data`'s `split`, fitted on the training split.

    Args:
        data: `tfrec.data.PreparedData` or `StreamedData`.
        model_config: the `ModelConfig` of the model they are compared with (its task picks them).
        ks: cut-offs of the ranking metrics.
        split: "test" or "valid".

    Returns:
        dict; empty for click models (their AUC needs sampled negatives, see `protocol.evaluate_model`).
    """
    held_out = protocol.HeldOut.from_data(data, split)
    train = data.training_columns(BASELINE_FEATURES)
    targets = held_out.examples[schema.TARGET_ITEM_ID]
    figures = {}
    if model_config.task in protocol.RANKS_CATALOGUE:
        for name, cls in RANKING_BASELINES.items():
            if cls is ItemKNN and data.vocab.num_items > MAX_KNN_ITEMS:
                logging.info("item-kNN reference skipped: %d items, more than %d (its dense similarity matrix)",
                             data.vocab.num_items, MAX_KNN_ITEMS)
                continue
            scores = cls(data.vocab.num_items).fit(train).score(held_out.examples)
            figures[name] = metrics.ranking_metrics(scores, targets, held_out.excluded_history(held_out.examples),
                                                    ks=ks, exclude=held_out.prior)
    elif model_config.ranking_target == "rating" and data.has_ratings:
        for name, make in RATING_BASELINES.items():
            predicted = make(data.vocab).fit(train).predict(held_out.examples)
            figures[name] = metrics.rating_metrics(predicted, held_out.examples[schema.TARGET_RATING])
    return figures
