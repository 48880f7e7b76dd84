"""The held-out figures a training run reports: the evaluation step of `Trainer.fit`.

The model's test metrics, its valid metrics under "valid", and under
"baselines" what the reference baselines reach on the same test targets
(`references.reference_metrics`): the figures of `DIR/metrics.json`.

Example:

>>> figures = held_out_figures(model, data, ks=(10, 100))
>>> sorted(figures)[:3], sorted(figures["baselines"])
(['HR@10', 'HR@100', 'MRR'], ['popularity', 'transitions'])
"""

from typing import Optional

from tfrec.evaluation import protocol, references


def held_out_figures(model, data, ks: tuple = (10, 100), batch_size: int = 512,
                     valid: Optional[protocol.HeldOut] = None, valid_baselines: Optional[dict] = None) -> dict:
    """The test metrics of `model` on `data`, its valid ones under "valid", the baselines' under "baselines".

    Args:
        model: a trained tfrec model (`tfrec.models.Recommender`).
        data: the `tfrec.data.PreparedData` (or `StreamedData`) it was trained on.
        ks: cut-offs of the ranking metrics.
        batch_size: examples scored at once.
        valid: the valid `protocol.HeldOut` of `data`, when the caller has it already.
        valid_baselines: the baselines' valid metrics, when the caller has them already.

    Returns:
        dict of metric name -> float, plus "valid" (the same on the valid split, with the baselines'
        under "valid" -> "baselines") and "baselines" (baseline name -> its test metrics).
    """
    test = protocol.HeldOut.from_data(data, "test")
    valid = valid or protocol.HeldOut.from_data(data, "valid")
    figures = protocol.evaluate_model(model, test, model.cfg, ks, batch_size)
    figures["valid"] = protocol.evaluate_model(model, valid, model.cfg, ks, batch_size)
    figures["valid"]["baselines"] = (valid_baselines if valid_baselines is not None
                                     else references.reference_metrics(data, model.cfg, ks, split="valid"))
    figures["baselines"] = references.reference_metrics(data, model.cfg, ks)
    return figures
