"""The model card of an export: what the model is for, what it was trained on, how good it is.

Every export writes `assets/model_card.json` and `assets/model_card.md`: the
task and intended use, the limits that follow from the config and the
catalogue, the data and split, the test metrics beside the baselines of the
same split (`tfrec.evaluation.references`), the training date, wall time and
configs, and, for a refreshed model, the before/after figures of its gate.
`export_run` fills it from the run directory; `export_model` on a model
object writes what the model itself knows (no metrics).

Example:

>>> card = build_card(model, "movies", 3, run_facts={"metrics": {"HR@10": 0.19}})  # doctest: +SKIP
>>> print(to_markdown(card))                                                        # doctest: +SKIP
"""

import datetime
from typing import Optional

from tfrec.evaluation import verdict

INTENDED_USE = {
    "retrieval": "Ranks the whole catalogue for a user's behaviour history (next behaviour: watch, click, buy); "
                 "candidate generation for a feed, 'because you ...' rows and item-to-item suggestions.",
    "ranking": "Scores given candidate items for a user's history (the {target}); re-ranking of a short list "
               "from another stage.",
    "multitask": "Ranks the whole catalogue for a user's history and scores candidates (the {target}).",
}
SHOWN_METRICS = ("HR@10", "NDCG@10", "HR@100", "MRR", "RMSE", "MAE", "AUC")


def _limits(model_config: dict, history_length: Optional[int], num_model_items: int, num_new_items: int) -> list:
    limits = [
        f"Recommends only the {num_model_items + num_new_items} catalogue items of this export; an item added "
        "later needs a new export (`--update_catalog`).",
        f"Trained on windows of {history_length or 'N'} behaviours: a longer history is read up to its newest "
        "512 (the positions the model tells apart), beyond the lengths it was tested on; send the most recent "
        "ones.",
        "Learnt from logged behaviour: it repeats the exposure and popularity biases of the logs it was "
        "trained on, and was tested offline only (next behaviour of held-out users), not in an A/B test.",
    ]
    if num_new_items:
        limits.append(f"{num_new_items} items were added after training and are scored from their text and the "
                      "id part of an average training target: they rank below trained items of the same appeal "
                      "until a refresh trains on behaviours with them (scripts/bench_new_items.py measures how "
                      "far).")
    if not model_config.get("use_text", True):
        limits.append("Items are known by id only: an item without training behaviours cannot be recommended.")
    return limits


def build_card(model_config: dict, model_name: str, version: int, num_model_items: int, num_new_items: int = 0,
               run_facts: Optional[dict] = None, refresh: Optional[dict] = None) -> dict:
    """The model card as a JSON-ready dict.

    Args:
        model_config: `ModelConfig.to_dict()` of the exported model.
        model_name, version: where the export is served.
        num_model_items: items the model was trained on; num_new_items: items added from text.
        run_facts: from the run directory: "metrics" (metrics.json), "config" (config.json), "run_dir".
        refresh: the before/after figures and verdict of `tfrec.refresh`, when it made the export.

    Returns:
        dict with "verdict" (one sentence: the model beside the best baselines on validation, or None),
        "model", "intended_use", "limits", "data", "training", "metrics", "baselines",
        "refresh", "config".
    """
    facts = run_facts or {}
    metrics = dict(facts.get("metrics") or {})
    config = facts.get("config") or {}
    task = model_config.get("task", "retrieval")
    target = "rating" if model_config.get("ranking_target", "rating") == "rating" else "click probability"
    summary = metrics.pop("data_summary", None)
    return {
        "verdict": verdict.verdict(metrics),
        "model": {"name": model_name, "version": version, "task": task,
                  "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "items": num_model_items + num_new_items, "items_added_from_text": num_new_items},
        "intended_use": INTENDED_USE[task].format(target=target),
        "limits": _limits(model_config, (config.get("data_config") or {}).get("history_length"), num_model_items,
                          num_new_items),
        "data": {"name": config.get("data_name"), "source": (config.get("data_config") or {}).get("source"),
                 "summary": summary},
        "training": {key: metrics.get(key) for key in ("trained_at", "wall_time_seconds", "epochs", "max_epochs",
                                                       "batch_size")}
                    | {"run_dir": facts.get("run_dir"), "warm_start_from": config.get("warm_start_from")},
        "metrics": {"test": {k: v for k, v in metrics.items() if k in SHOWN_METRICS},
                    "valid": {k: v for k, v in (metrics.get("valid") or {}).items() if k in SHOWN_METRICS}},
        "baselines": {name: {k: v for k, v in figures.items() if k in SHOWN_METRICS}
                      for name, figures in (metrics.get("baselines") or {}).items()},
        "refresh": refresh,
        "config": {"model_config": model_config, "train_config": config.get("train_config"),
                   "data_config": config.get("data_config")},
    }


def _figures(values: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in values.items()) or "not recorded"


def to_markdown(card: dict) -> str:
    """The card as a short Markdown document (`assets/model_card.md`)."""
    model, data, training = card["model"], card["data"], card["training"]
    lines = [f"# Model card: {model['name']}, version {model['version']}", "",
             *([card["verdict"], ""] if card.get("verdict") else []),
             f"- Task: {model['task']}; {model['items']} items ({model['items_added_from_text']} added from text "
             f"after training); exported {model['exported_at']}.",
             f"- Intended use: {card['intended_use']}", "", "## Data", ""]
    summary = data.get("summary")
    if summary:
        lines.append(f"- {data['name']}: {summary['interactions']} behaviours of {summary['users']} users on "
                     f"{summary['items']} items; split `{summary['split']}`: {summary['train_interactions']} train, "
                     f"{summary['valid_interactions']} valid, {summary['test_interactions']} test behaviours "
                     f"(content fingerprint {summary['fingerprint']}).")
    else:
        lines.append(f"- {data.get('name') or 'not recorded (exported from a model object)'}")
    lines += ["", "## Quality (held-out test split)", "", "| model | figures |", "|---|---|",
              f"| this model | {_figures(card['metrics']['test'])} |"]
    lines += [f"| {name} (same test targets) | {_figures(values)} |" for name, values in card["baselines"].items()]
    if card["metrics"]["valid"]:
        lines.append(f"| this model, validation split | {_figures(card['metrics']['valid'])} |")
    refresh = card.get("refresh")
    if refresh:
        lines += ["", "## Refresh gate", "",
                  f"- Before (version {refresh.get('served_version')}): {_figures(refresh['before'])}",
                  f"- After: {_figures(refresh['after'])}",
                  f"- {refresh['verdict']}"]
    lines += ["", "## Training", "",
              f"- Trained {training.get('trained_at') or 'at a time not recorded'}"
              + (f" in {training['wall_time_seconds']:.0f} s, {training['epochs']} of {training['max_epochs']} "
                 f"epochs, batch {training['batch_size']}" if training.get("wall_time_seconds") else "")
              + (f"; warm-started from {training['warm_start_from']}" if training.get("warm_start_from") else "")
              + ".", "- Configs: `model_card.json`, key `config`.", "", "## Limits", ""]
    lines += [f"- {limit}" for limit in card["limits"]]
    return "\n".join(lines) + "\n"
