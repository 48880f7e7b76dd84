"""The defaults against the counting baselines: runs of `python -m tfrec.train` given only the data's flags.

For each run directory (`--runs=NAME=DIR,...`, each trained with no flag but
the ones its data needs), prints the test and validation HR@10 / NDCG@10 of
the model as trained (its transition prior weighed on validation), of the same
network without the prior (weight 0, evaluated again here), and of the
popularity, transitions and item-kNN baselines on the same targets, with the
model's margin over the best baseline, the prior's weight and the settings
derived from the data. The table goes to BENCHMARKS.md (section
`bench_defaults`) with the commands that trained the runs and the machine.

    nice .venv/bin/python -m tfrec.train --source=movielens:../shared/data/ml-100k --run_dir=runs/defaults-ml100k
    .venv/bin/python scripts/make_shop_log.py --output_dir=/tmp/shop
    nice .venv/bin/python -m tfrec.train --source=table:interactions=/tmp/shop/events.csv,items=/tmp/shop/items.jsonl \\
        --user_col=customer --item_col=sku --event_col=event --time_col=time --time_format=iso \\
        --text_cols=title,brand,category,description --run_dir=runs/defaults-shop
    .venv/bin/python scripts/make_heavy_users.py --data_dir=../shared/data/ml-100k --output_dir=/tmp/heavy
    nice .venv/bin/python -m tfrec.train --source=table:interactions=/tmp/heavy/ratings.csv,items=/tmp/heavy/items.csv \
        --run_dir=runs/defaults-heavy
    .venv/bin/python scripts/bench_defaults.py --runs=ml100k=runs/defaults-ml100k,shop=runs/defaults-shop,...

Target events (`--section=bench_targets`): the same table for runs given
`--target_events` / `--target_min_rating` (each figure on those targets,
baselines included), e.g. the shop log's purchases with the clicks as context
against the same run with `--context_loss_weight=1` (trained on every
behaviour, scored on purchases).

The data sets: MovieLens-100K, Amazon Office (`--time_col=position
--text_cols=title,brand,categories,description`), the shop log of
`scripts/make_shop_log.py` (seed 0) and the 150 heaviest MovieLens-100K users
(`scripts/make_heavy_users.py`).
"""

import os
import re
import sys

import numpy as np
from absl import app, flags

import benchlib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from tfrec.evaluation import prior_weight, protocol  # noqa: E402
from tfrec.training import RunDirectory, load_run_data  # noqa: E402

BASELINES = ("popularity", "transitions", "item-kNN")
SECTIONS = {
    "bench_defaults": "The defaults against the counting baselines",
    "bench_targets": "Target events: the next purchase or liked film, the other behaviours as context",
}
MEASURES = ("HR@10", "NDCG@10")


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the script's flags in `flag_values`."""
    flags.DEFINE_list("runs", [], "NAME=RUN_DIR pairs: runs of `python -m tfrec.train` with only the data's flags.",
                      flag_values=flag_values)
    flags.DEFINE_string("output", os.path.join(REPO_ROOT, "BENCHMARKS.md"), "Markdown file to write the table to.",
                        flag_values=flag_values)
    flags.DEFINE_bool("recalibrate", False, "Choose each run's prior form and weight again on validation with this "
                      "code's calibration step (runs trained before a change to it), and report those figures.",
                      flag_values=flag_values)
    flags.DEFINE_enum("section", "bench_defaults", list(SECTIONS), "BENCHMARKS.md section (and title) to write.",
                      flag_values=flag_values)


def reevaluated(directory: str) -> tuple:
    """A run's model figures again: ({"test", "valid"} of the network alone (prior weight 0), and with
    --recalibrate, {"test", "valid", "weight", "form"} of its prior chosen again on validation by this code's
    calibration step (`choose_prior_weight`, as `Trainer.fit` does after training), else None)."""
    run, data = load_run_data(directory)
    model = run.model
    held_out = {split: protocol.HeldOut.from_data(data, split) for split in ("test", "valid")}

    def figures():
        return {split: protocol.evaluate_model(model, held, run.model_config, (10,)) for split, held in held_out.items()}

    prior, recalibrated = model.transition_prior, None
    if prior is not None and flags.FLAGS.recalibrate:
        choice = prior_weight.choose_prior_weight(model, held_out["valid"])
        prior.weight.assign(choice.weight)
        prior.set_form(choice.form)
        recalibrated = {**figures(), "weight": choice.weight, "form": choice.form}
    if prior is not None:
        prior.weight.assign(0.0)
    return figures(), recalibrated


def run_figures(directory: str) -> tuple:
    """(figures, command line) of one run: figures holds "test", "valid", "alone_test", "alone_valid" (the
    network without the prior), "baselines", "prior", "derived", "epochs", "minutes"."""
    run = RunDirectory(directory)
    metrics, config = run.read_metrics(), run.read_config()
    alone, recalibrated = reevaluated(directory)
    prior = metrics.get("transition_prior") or {}
    test, valid = metrics, metrics["valid"]
    if recalibrated:
        test, valid, prior = recalibrated["test"], recalibrated["valid"], recalibrated
    derived = "; ".join(f"{field} {reason.split(':')[0]}" for field, reason in
                        (metrics.get("derived_settings") or {}).items())
    figures = {"test": test, "valid": valid, "alone_test": alone["test"], "alone_valid": alone["valid"],
               "baselines": metrics["baselines"], "prior": f"{prior.get('weight', 0):g} {prior.get('form', 'counts')}",
               "derived": derived, "epochs": f"{metrics['epochs']} of {metrics['max_epochs']}",
               "minutes": metrics["wall_time_seconds"] / 60}
    data_config = config["data_config"]
    seed = config["train_config"].get("seed", 0)
    targets = data_config.get("target_events") or data_config.get("target_min_rating") is not None
    weight = config["model_config"].get("context_loss_weight", 0.0)
    extra = (f" --seed={seed}" if seed else "") + (f" --context_loss_weight={weight:g}" if targets else "")
    command = f"python -m tfrec.train --source={_portable(data_config['source'])}{extra} (data flags: {_columns(data_config)})"
    return figures, command


def table_row(name: str, figures: dict) -> str:
    """The Markdown row of one run's (or a mean's) figures."""
    baselines = figures["baselines"]
    best = {m: max(baselines[b][m] for b in BASELINES if b in baselines) for m in MEASURES}
    margin = " / ".join(f"{figures['test'][m] / best[m] - 1:+.0%}" for m in MEASURES)
    cells = [name, pair(figures["test"]), pair(figures["alone_test"]),
             *(pair(baselines[b]) if b in baselines else "—" for b in BASELINES),
             margin, pair(figures["valid"]), pair(figures["alone_valid"]), figures["prior"], figures["derived"],
             figures["epochs"], f"{figures['minutes']:.1f} min"]
    return "| " + " | ".join(cells) + " |"


def seed_means(named: list) -> list:
    """(name, figures) of the mean over the runs named NAME, NAME_seed1, NAME_seed2, ... (two or more), whose
    baselines are the same split's; the test figures as mean ± standard error."""
    groups = {}
    for name, figures in named:
        groups.setdefault(re.sub(r"_seed\d+$", "", name), []).append(figures)
    means = []
    for base, runs in groups.items():
        if len(runs) < 2:
            continue
        if any(r["baselines"] != runs[0]["baselines"] for r in runs):
            raise app.UsageError(f"--runs: the {base} runs hold different baseline figures: not seeds of one split")
        mean = {key: {m: float(np.mean([r[key][m] for r in runs])) for m in MEASURES}
                for key in ("test", "valid", "alone_test", "alone_valid")}
        errors = {m: float(np.std([r["test"][m] for r in runs], ddof=1) / np.sqrt(len(runs))) for m in MEASURES}
        means.append((f"**{base}, mean of {len(runs)} seeds** (test ± SE {errors['HR@10']:.4f} / "
                      f"{errors['NDCG@10']:.4f})",
                      {**mean, "baselines": runs[0]["baselines"], "prior": "per seed", "derived": "",
                       "epochs": "", "minutes": float(np.mean([r["minutes"] for r in runs]))}))
    return means


def _portable(source: str) -> str:
    """`source` with the repository's sibling folders as `../` and other directories as `DATA/`."""
    parent = os.path.dirname(REPO_ROOT) + os.sep
    return re.sub(r"(?<=[:=,])(/[^,=]+/)", lambda m: m.group(1).replace(parent, "../", 1)
                  if m.group(1).startswith(parent + "shared") else "DATA/", source)


def pair(figures: dict) -> str:
    """'HR@10 / NDCG@10' of `figures`, four decimals."""
    return " / ".join(f"{figures[m]:.4f}" for m in MEASURES)


def _columns(data_config: dict) -> str:
    defaults = {"user_col": "user_id", "item_col": "item_id", "time_col": "timestamp", "event_col": "event",
                "time_format": "unix", "text_cols": [], "target_events": [], "target_min_rating": None,
                "seen_exclusion": "targets"}
    given = [f"--{key}={','.join(value) if isinstance(value, list) else value}"
             for key, default in defaults.items() if (value := data_config.get(key, default)) != default]
    return " ".join(given) or "none"


def named_runs(argv: list) -> list:
    """The [NAME, RUN_DIR] pairs of --runs; a UsageError for stray arguments or a malformed pair."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    runs = [item.split("=", 1) for item in flags.FLAGS.runs]
    if not runs or any(len(pair) != 2 for pair in runs):
        raise app.UsageError("--runs: expected NAME=RUN_DIR pairs")
    return runs


def main(argv):
    runs = named_runs(argv)
    header = ("| data | tfrec defaults, test HR@10 / NDCG@10 | same network without the prior | popularity | "
              "transitions | item-kNN | margin over the best baseline | valid (defaults) | valid (no prior) | "
              "prior weight and form | derived from the data | epochs | train wall time |")
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    commands, named = [], []
    for name, directory in runs:
        figures, command = run_figures(directory)
        named.append((name, figures))
        lines.append(table_row(name, figures))
        commands.append(f"- {name}: `{command}`")
        print(lines[-1], flush=True)
    for name, figures in seed_means(named):
        lines.append(table_row(name, figures))
        print(lines[-1], flush=True)
    body = "\n".join([
        f"## {SECTIONS[flags.FLAGS.section]} (`scripts/bench_defaults.py`)", "",
        "Each run trained by `python -m tfrec.train` with only the flags its data needs (below); test and "
        "validation figures on the protocol of docs/evaluation.md, one seed per row; the rows of NAME, NAME_seed1, "
        "NAME_seed2 are averaged in a mean row. The prior's weight and form were "
        "chosen on validation" + (" again by the current calibration step (--recalibrate; the networks as "
                                  "trained)" if flags.FLAGS.recalibrate else "") +
        "; \"without the prior\" is the same network with weight 0. Margin: test figure over the "
        "best baseline's, HR@10 / NDCG@10.", "",
        f"Command: `python scripts/bench_defaults.py --section={flags.FLAGS.section}"
        f"{' --recalibrate' if flags.FLAGS.recalibrate else ''} "
        f"--runs={','.join(f'{n}=RUN_DIR' for n, _ in runs)}`; "
        f"machine: {benchlib.machine()}.", "", *lines, "", "Runs:", *commands])
    benchlib.write_section(flags.FLAGS.output, flags.FLAGS.section, body)


if __name__ == "__main__":
    define_flags()
    app.run(main)
