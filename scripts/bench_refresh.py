"""Keeping a model fresh: the stale model, a warm refresh and a full retrain, round by round.

Behaviours are ordered on a clock: the timestamp on MovieLens-100K; on Amazon
Office (positions, no times) each behaviour's place in its user's sequence as
a fraction of that sequence (0 = first, 1 = last). The first --initial share
of the clock's span trains the first model. Then --rounds rounds each add the
next --window share to the logs and evaluate on the window after it:

- stale: the first model, never retrained; its catalogue grows with the data
  (new items scored from their text, `tfrec.training.warm_start.transfer_weights`);
- warm refresh: the previous round's refreshed model (the first model in round
  1), warm-started (`warm_start_model`) and fine-tuned on the training
  behaviours it never trained on (`PreparedData.training_not_in` the previous
  round's training behaviours): those of the added window and the previous
  round's validation targets, their histories reaching back;
- warm refresh + replay R (with --replay=R): the same, plus every training
  behaviour of a random share R of the users (R = 1: every behaviour so far),
  the previous round's replayed model warm-started;
- full retrain: a new model trained on every behaviour so far.

Each round's data: the behaviours before the end of its evaluation window and
the items they name; training = behaviours before the window, less each
user's last one (the validation target of early stopping); test = every
behaviour in the window, its history every earlier behaviour, items met
before excluded from the ranking (docs/evaluation.md). Standard error of
HR@10: sqrt(p (1 - p) / n) over the n test behaviours. Wall time: each model's
build (catalogue encoding, a warm start's loading of the previous run) and
training, its evaluation aside.

Usage:
  nice .venv/bin/python scripts/bench_refresh.py --dataset=ml100k
  nice .venv/bin/python scripts/bench_refresh.py --dataset=office --table_only
"""

import dataclasses
import glob
import json
import math
import os
import shlex
import sys
import time

import numpy as np
import benchlib
from absl import app, flags

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from tfrec.data import prepare, schema, window_split  # noqa: E402
from tfrec.evaluation import protocol  # noqa: E402
from tfrec.training import Trainer, load_run  # noqa: E402
from tfrec.training.warm_start import warm_start_model  # noqa: E402

SHARED_DATA = os.path.join(REPO_ROOT, "..", "shared", "data")
DATASETS = {
    "ml100k": ("MovieLens-100K", (f"--source=movielens:{os.path.join(SHARED_DATA, 'ml-100k')}",), False),
    "office": ("Amazon Office products",
               (f"--source=table:interactions={SHARED_DATA}/amazon-office/interactions.csv,"
                f"items={SHARED_DATA}/amazon-office/items.csv", "--time_col=position",
                "--text_cols=title,brand,categories,description"), True),
}
MODELS = ("stale", "warm refresh", "full retrain")
REPLAYED = "warm refresh + replay"
"""The warm refresh with --replay=R > 0, named "warm refresh + replay R": measured by its own invocation
per share, shown where measured."""
CLOCK_SCALE = 1_000_000  # Office: relative positions as integer timestamps


def _file_name(model_name):
    """"warm refresh + replay 0.25" -> "warm_refresh_replay_0.25"."""
    return "_".join(model_name.replace("+", " ").split())


FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "ml100k", list(DATASETS), "Data set to run.")
flags.DEFINE_float("initial", 0.7, "Share of the clock's span that trains the first model.")
flags.DEFINE_float("window", 0.075, "Share of the span each round adds (and evaluates on, the round after).")
flags.DEFINE_integer("rounds", 3, "Refresh rounds.")
flags.DEFINE_list("train_flags", ["--sequence_length=64", "--early_stopping_patience=4"],
                  "tfrec.train flags of every model (beside the data set's), e.g. to keep the run affordable.")
flags.DEFINE_string("results_dir", os.path.join(REPO_ROOT, "bench_results", "refresh"), "Per-model JSON results.")
flags.DEFINE_string("runs_dir", os.path.join(REPO_ROOT, "runs", "bench_refresh"), "Run directories.")
flags.DEFINE_string("benchmarks_md", os.path.join(REPO_ROOT, "BENCHMARKS.md"), "Markdown file receiving the table.")
flags.DEFINE_bool("table_only", False, "Only rebuild the table from the saved results.")
flags.DEFINE_bool("reevaluate", False, "Evaluate the saved stale and full retrain models again with this code "
                  "(their wall times kept), e.g. after a change of how untrained items are scored.")
flags.DEFINE_float("replay", 0.0, "> 0: measure only the warm refresh + replay rows: the warm refresh fine-tuned "
                   "on what it never trained on plus every training behaviour of this share of the users.")
flags.DEFINE_list("seed_results_dirs", [], "--results_dir of runs with other seeds (--models=warm_refresh "
                  "--models=full_retrain): the table also gives each round's means over the seeds.")
flags.DEFINE_multi_enum("models", [_file_name(m) for m in MODELS], [_file_name(m) for m in MODELS],
                        "Rows to measure (without --replay), e.g. --models=warm_refresh with another --seed in "
                        "--train_flags and its own --results_dir and --runs_dir.")


def _clocked(tables, relative_positions):
    """The tables with timestamps replaced by relative positions (scaled to integers), when asked."""
    if not relative_positions:
        return tables
    logs = tables.interactions.copy()
    users = logs[schema.USER_ID].to_numpy()
    place = logs.groupby(users, sort=False).cumcount().to_numpy()
    count = logs.groupby(users, sort=False)[schema.USER_ID].transform("size").to_numpy()
    logs[schema.TIMESTAMP] = np.round(CLOCK_SCALE * place / np.maximum(count - 1, 1)).astype(np.int64)
    return dataclasses.replace(tables, interactions=logs)


def round_data(tables, data_config, train_end, test_end):
    """The `PreparedData` of one round: behaviours before `test_end` and the items they name, split by
    `tfrec.data.window_split` at `train_end`."""
    logs = tables.interactions
    logs = logs[logs[schema.TIMESTAMP] < test_end].reset_index(drop=True)
    items = tables.items[tables.items[schema.ITEM_ID].isin(set(logs[schema.ITEM_ID]))].reset_index(drop=True)
    subset = dataclasses.replace(tables, interactions=logs, items=items, users=None)
    return prepare(data_config, tables=subset, split=window_split(logs, train_end))


def _evaluate(model, data, train_config):
    test = protocol.HeldOut.from_split(data.split, data.vocab, "test", data.examples)
    return protocol.evaluate_model(model, test, model.cfg, train_config.eval_ks, train_config.eval_batch_size)


def _result_path(dataset, round_index, model_name):
    return os.path.join(FLAGS.results_dir, dataset, f"round{round_index}_{_file_name(model_name)}.json")


def _load(path):
    with open(path) as f:
        return json.load(f)


def _save(path, record):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    benchlib.write_atomic(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


def run_dataset(dataset):
    data_config, model_config, train_config = benchlib.train_configs(*DATASETS[dataset][1], *FLAGS.train_flags)
    tables = _clocked(data_config.load_tables(), DATASETS[dataset][2])
    times = tables.interactions[schema.TIMESTAMP].to_numpy()
    low, high = int(times.min()), int(times.max())
    cut = lambda share: low + math.ceil(share * (high - low))  # noqa: E731
    runs = os.path.join(FLAGS.runs_dir, dataset)
    trainer = Trainer(train_config)

    first_data = round_data(tables, data_config, cut(FLAGS.initial), cut(FLAGS.initial + FLAGS.window))
    first_run = os.path.join(runs, "first")
    if not os.path.exists(os.path.join(first_run, "metrics.json")):
        started = time.time()
        first = trainer.fit(trainer.build_model(model_config, first_data), first_data, run_dir=first_run)
        print(f"{dataset}: first model trained in {time.time() - started:.0f} s: {_brief(first.metrics)}",
              flush=True)

    previous_warm, previous_train = first_run, first_data.split.train
    warm_name = f"{REPLAYED} {FLAGS.replay:g}" if FLAGS.replay else "warm refresh"
    for round_index in range(1, FLAGS.rounds + 1):
        train_end = cut(FLAGS.initial + round_index * FLAGS.window)
        data = round_data(tables, data_config, train_end, cut(FLAGS.initial + (round_index + 1) * FLAGS.window))
        size = {"train": len(data.split.train), "test": len(data.split.test), "items": data.vocab.num_items}
        for model_name in (warm_name,) if FLAGS.replay else [m for m in MODELS if _file_name(m) in FLAGS.models]:
            path = _result_path(dataset, round_index, model_name)
            run_dir = os.path.join(runs, f"round{round_index}_{_file_name(model_name)}")
            if os.path.exists(path):  # measured by an earlier invocation
                previous_warm = run_dir if model_name == warm_name else previous_warm
                if FLAGS.reevaluate and model_name in ("stale", "full retrain"):
                    _reevaluate(path, warm_start_model(first_run, data) if model_name == "stale"
                                else load_run(run_dir).model, data, train_config)
                continue
            started = time.time()
            epochs = 0
            if model_name == "stale":
                model = warm_start_model(first_run, data)
            elif model_name == warm_name:
                model = warm_start_model(previous_warm, data, strategy=trainer.strategy)
                result = trainer.fit(
                    model, data.training_not_in(previous_train, replay=FLAGS.replay, seed=train_config.seed),
                    run_dir=run_dir)
                epochs = result.metrics["epochs"]
                previous_warm = run_dir
            else:
                model = trainer.build_model(model_config, data)
                epochs = trainer.fit(model, data, run_dir=run_dir).metrics["epochs"]
            seconds = time.time() - started
            metrics = _evaluate(model, data, train_config)
            record = {"dataset": dataset, "round": round_index, "model": model_name, "seconds": seconds,
                      "epochs": epochs, "steps": trained_steps(run_dir) if epochs else 0, "metrics": metrics,
                      **size, **({"replay": FLAGS.replay} if FLAGS.replay else {})}
            _save(path, record)
            print(f"{dataset} round {round_index} {model_name}: {_brief(metrics)}, {seconds:.0f} s", flush=True)
        previous_train = data.split.train


def _reevaluate(path, model, data, train_config):
    record = _load(path)
    record["metrics"] = _evaluate(model, data, train_config)
    _save(path, record)
    print(f"{record['dataset']} round {record['round']} {record['model']} evaluated again: "
          f"{_brief(record['metrics'])}", flush=True)


def trained_steps(run_dir):
    """Optimizer steps of the run at `run_dir` (its training log's last epoch): the work, whatever the load."""
    steps = 0
    with open(os.path.join(run_dir, "training_log.jsonl")) as f:
        for line in f:
            event = json.loads(line)
            steps = event["step"] if event["event"] == "epoch" else steps
    return steps


def _brief(metrics):
    return f"HR@10 {metrics['HR@10']:.4f} NDCG@10 {metrics['NDCG@10']:.4f}"


def _standard_error(p, n):
    return math.sqrt(p * (1 - p) / n) if n else float("nan")


def table(dataset):
    """The markdown table of the saved results of `dataset` (rows not run yet say so; the replayed
    warm refresh only where measured)."""
    lines = ["| round | test behaviours | items | model | HR@10 | NDCG@10 | wall time | epochs | steps |",
             "|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for round_index in range(1, FLAGS.rounds + 1):
        records = {}
        replayed_paths = glob.glob(_result_path(dataset, round_index, REPLAYED + " *"))
        for path in [_result_path(dataset, round_index, name) for name in MODELS] + replayed_paths:
            if os.path.exists(path):
                record = _load(path)
                records[f"{REPLAYED} {record['replay']:g}" if "replay" in record else record["model"]] = record
        replayed = sorted((name for name in records if name.startswith(REPLAYED)), key=lambda n: records[n]["replay"])
        for model_name in (*MODELS, *replayed):
            record = records.get(model_name)
            if record is None:
                lines.append(f"| {round_index} | | | {model_name} | not run yet | | | | |")
                continue
            hr, n = record["metrics"]["HR@10"], record["test"]
            lines.append(f"| {round_index} | {n} | {record['items']} | {model_name} | {hr:.4f} ± "
                         f"{_standard_error(hr, n):.4f} | {record['metrics']['NDCG@10']:.4f} | "
                         f"{record['seconds']:.0f} s | {record['epochs'] or '—'} | {record['steps'] or '—'} |")
        if "full retrain" not in records or "stale" not in records:
            continue
        full, stale = records["full retrain"], records["stale"]
        se = _standard_error(full["metrics"]["HR@10"], full["test"])
        for warm_name in ("warm refresh", *replayed):
            if warm_name not in records:
                continue
            warm = records[warm_name]
            gap = warm["metrics"]["HR@10"] - full["metrics"]["HR@10"]
            verdicts.append(
                f"round {round_index}, {warm_name}: warm - full HR@10 {gap:+.4f} ({gap / se:+.2f} SE), warm wall "
                f"time {warm['seconds'] / full['seconds']:.2f} of full (steps {warm['steps'] / full['steps']:.2f}), "
                "stale below both: "
                f"{stale['metrics']['HR@10'] < min(warm['metrics']['HR@10'], full['metrics']['HR@10'])}")
    return "\n".join(lines), verdicts


def seeds_table(dataset):
    """Per round, the warm refresh and the full retrain HR@10 of every seed (--results_dir first, then
    --seed_results_dirs) and their means; the gap in the test's standard error and in that of the
    difference of the means (seed and test noise together)."""
    lines = ["| round | test behaviours | warm refresh by seed | mean | full retrain by seed | mean | warm - full "
             "| in test SE | in SE of the means' difference | steps, warm / full |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for round_index in range(1, FLAGS.rounds + 1):
        runs = {}
        for model_name in ("warm refresh", "full retrain"):
            paths = [os.path.join(d, dataset, f"round{round_index}_{_file_name(model_name)}.json")
                     for d in (FLAGS.results_dir, *FLAGS.seed_results_dirs)]
            runs[model_name] = [_load(p) for p in paths if os.path.exists(p)]
        warm, full = runs["warm refresh"], runs["full retrain"]
        if not warm or not full or len(warm) + len(full) < 3:  # one seed of each: the main table says it
            continue
        hr = lambda records: [r["metrics"]["HR@10"] for r in records]  # noqa: E731
        gap = np.mean(hr(warm)) - np.mean(hr(full))
        n = full[0]["test"]
        spread = "—"  # the standard error of the means' difference needs two seeds of each
        if len(warm) > 1 and len(full) > 1:
            variance = np.var(hr(warm), ddof=1) / len(warm) + np.var(hr(full), ddof=1) / len(full)
            spread = f"{gap / math.sqrt(variance):+.2f}"
        lines.append(f"| {round_index} | {n} | {' / '.join(f'{v:.4f}' for v in hr(warm))} | {np.mean(hr(warm)):.4f} "
                     f"| {' / '.join(f'{v:.4f}' for v in hr(full))} | {np.mean(hr(full)):.4f} | {gap:+.4f} "
                     f"| {gap / _standard_error(np.mean(hr(full)), n):+.2f} | {spread} "
                     f"| {np.mean([r['steps'] for r in warm]) / np.mean([r['steps'] for r in full]):.2f} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def section():
    parts = ["## Keeping fresh (`scripts/bench_refresh.py`)", "",
             __doc__.split("Usage:")[0].strip().split("\n", 1)[1].strip(), ""]
    for dataset, (title, _, _) in DATASETS.items():
        rows, verdicts = table(dataset)
        parts += [f"### {title}", "", rows, ""]
        parts += [f"- {v}" for v in verdicts]
        parts.append("")
        seeds = seeds_table(dataset) if FLAGS.seed_results_dirs else ""
        parts += [f"Seeds ({dataset}): `{FLAGS.results_dir}` and `{'`, `'.join(FLAGS.seed_results_dirs)}`", "",
                  seeds, ""] if seeds else []
    parts += [f"Model settings: the defaults plus `{' '.join(FLAGS.train_flags)}`; initial share {FLAGS.initial}, "
              f"window {FLAGS.window}, {FLAGS.rounds} rounds.", "",
              f"Machine: {benchlib.machine()}.", "",
              f"Command: `{' '.join(shlex.quote(a) for a in sys.argv)}`"]
    return "\n".join(parts)


def main(argv):
    del argv
    missing = [d for d in FLAGS.seed_results_dirs if not os.path.isdir(d)]
    if missing:
        raise app.UsageError(f"--seed_results_dirs: no such directory: {', '.join(missing)}")
    if not FLAGS.table_only:
        run_dataset(FLAGS.dataset)
    text = section()
    benchlib.write_section(FLAGS.benchmarks_md, "bench_refresh", text)
    print(text)


if __name__ == "__main__":
    app.run(main)
