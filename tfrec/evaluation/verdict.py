"""The model beside its baselines: a comparison table, a one-sentence verdict, and the publishing gate.

A run's `metrics.json` holds the model's test figures at the top level and its
validation figures under "valid"; the baselines' figures on the same targets
sit under "baselines" (test) and "valid" -> "baselines" (validation). A model
that ranks the catalogue is compared on `COMPARED` with the best baseline of
each measure; the gate (`below_baseline`) reads the validation figures, never
the test ones, so that publishing decisions do not tune on the test split.

Example:

>>> metrics = {"HR@10": 0.21, "NDCG@10": 0.11, "baselines": {"transitions": {"HR@10": 0.15, "NDCG@10": 0.08}},
...            "valid": {"HR@10": 0.25, "NDCG@10": 0.13,
...                      "baselines": {"transitions": {"HR@10": 0.18, "NDCG@10": 0.09}}}}
>>> below_baseline(metrics)
[]
>>> verdict(metrics)
'Above every baseline on validation: HR@10 0.2500 against 0.1800 (transitions), NDCG@10 0.1300 against 0.0900 (transitions).'
"""

from typing import Optional

COMPARED = ("HR@10", "NDCG@10")
SPLITS = {"valid": "validation", "test": "test"}


def _figures(metrics: dict, split: str) -> tuple:
    """(the model's figures, {baseline: figures}) of `split` ("valid" or "test")."""
    if split == "test":
        return metrics, metrics.get("baselines") or {}
    valid = metrics.get("valid") or {}
    return valid, valid.get("baselines") or {}


def best_baselines(metrics: dict, split: str = "valid") -> dict:
    """measure -> (baseline name, figure) of the best baseline on each of `COMPARED` it reports."""
    _, baselines = _figures(metrics, split)
    best = {}
    for measure in COMPARED:
        scored = [(figures[measure], name) for name, figures in baselines.items() if measure in figures]
        if scored:
            figure, name = max(scored)
            best[measure] = (name, figure)
    return best


def below_baseline(metrics: dict, split: str = "valid") -> list:
    """One message per measure of `COMPARED` where the model scores below the best baseline (empty: none).

    Raises:
        ValueError: the metrics hold no figure of the model or of a baseline for `split`.
    """
    model, _ = _figures(metrics, split)
    best = best_baselines(metrics, split)
    if not best or not all(measure in model for measure in best):
        raise ValueError(f"metrics.json holds no {SPLITS[split]} figures of the model and its baselines "
                         f"({', '.join(COMPARED)}): evaluate the run again with this version of tfrec")
    return [f"{SPLITS[split]} {measure} {model[measure]:.4f} is below {name}'s {figure:.4f}"
            for measure, (name, figure) in best.items() if model[measure] < figure]


def verdict(metrics: dict, split: str = "valid") -> Optional[str]:
    """One sentence: whether the model beats every baseline on `split`; None without baseline figures."""
    model, _ = _figures(metrics, split)
    best = best_baselines(metrics, split)
    if not best or not all(measure in model for measure in best):
        return None
    gaps = below_baseline(metrics, split)
    comparisons = ", ".join(f"{measure} {model[measure]:.4f} against {figure:.4f} ({name})"
                            for measure, (name, figure) in best.items())
    if gaps:
        return f"Below a baseline on {SPLITS[split]}: {comparisons}; a simpler method serves these users better."
    return f"Above every baseline on {SPLITS[split]}: {comparisons}."


def comparison_table(metrics: dict, model_name: str = "this model") -> str:
    """A short plain-text table: the model and each baseline, validation and test, on `COMPARED`."""
    names = [model_name, *sorted(set(_figures(metrics, "valid")[1]) | set(_figures(metrics, "test")[1]))]
    header = [f"{SPLITS[split]} {measure}" for split in SPLITS for measure in COMPARED]
    width = max(len(name) for name in names) + 2
    lines = ["".ljust(width) + "  ".join(f"{column:>16}" for column in header)]
    for name in names:
        cells = []
        for split in SPLITS:
            model, baselines = _figures(metrics, split)
            figures = model if name == model_name else baselines.get(name, {})
            cells += [f"{figures[m]:16.4f}" if m in figures else f"{'-':>16}" for m in COMPARED]
        lines.append(name.ljust(width) + "  ".join(cells))
    return "\n".join(lines)


def report(metrics: dict) -> str:
    """What a command prints at its end: the comparison table, the verdict and the transition prior's weight."""
    lines = [comparison_table(metrics)]
    sentence = verdict(metrics)
    if sentence:
        lines.append(sentence)
    prior = metrics.get("transition_prior")
    if prior:
        lines.append(f"transition prior weight {prior['weight']:g} (chosen on validation NDCG@10, then HR@10)")
    return "\n".join(lines)
