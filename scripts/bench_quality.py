"""Quality benchmark: every model on the same split, scored by the same metrics.

Rows (see `ROWS`; each names the data sets it runs on): popularity, the TFRS tutorial retrieval and ranking models
(as published: 3 epochs; converged: up to --converged_retrieval_epochs or
--converged_epochs, epoch chosen on
the validation split), item-to-item transitions, item-kNN, user + item
biases, the global mean, tfrec before fine-tuning (pretrained MiniLM item
text, user = mean of recent history embeddings), and tfrec models trained by `tfrec.Trainer`
from a flagfile (run only when the flagfile exists). Cold-start rows train on
the `cold_items` split and report HR@100 on test targets that are cold items,
next to the expectation of a random ranking.

Each row's result is saved as JSON under --results_dir (`bench_results/quality/`,
kept in the repository); the markdown table is assembled from the saved results (rows can run separately with --only) and
written to BENCHMARKS.md between `<!-- bench_quality -->` and
`<!-- /bench_quality -->`, with a plot of HR@K (K = 1..100) in --plot.

Protocol (docs/evaluation.md): per user, sorted by (timestamp, item id), the last
interaction is the test target and the one before the validation target.
Every catalogue item is a candidate; every item the user met before the
target is excluded (complete history, not a truncated one); ties with the
target count against it (`tfrec.evaluation.metrics`). Baselines are fitted on
the train interactions only.

Two data sets (--dataset, see `DATASETS`): MovieLens-100K (`ml100k`, the
default) and Amazon Office products (`office`), each with its own rows, results
directory, BENCHMARKS.md section and plot.

Usage:
  nice -n 10 .venv/bin/python scripts/bench_quality.py            # every row
  .venv/bin/python scripts/bench_quality.py --only=popularity,transitions
  .venv/bin/python scripts/bench_quality.py --dataset=office --only=transitions
  .venv/bin/python scripts/bench_quality.py --only=none           # table only
"""

import collections
import dataclasses
import datetime
import json
import os
import shlex
import shutil
import sys
import time

import numpy as np
import benchlib
from absl import app, flags

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from tfrec import baselines, data  # noqa: E402
from tfrec.baselines import tfrs_runner  # noqa: E402
from tfrec.data import schema  # noqa: E402
from tfrec.evaluation import full_history_examples, metrics  # noqa: E402

MAIN_SPLIT = "leave_last_out"
COLD_SPLIT = "cold_items"
MAX_K = 100
SEEDS = (0, 1, 2)
"""Seeds of the best retrieval config, its id-only ablation and the cold-item rows; the other seeded rows run seed 0."""
ONE_SEED = (0,)
DETERMINISTIC = ()
"""The seeds of a row that no seed changes: it runs once (with seed 0)."""
TABLE_METRICS = ("HR@10", "NDCG@10", "Recall@100", "MRR", "RMSE")
CURVE_KS = (10, 100, *(k for k in range(1, MAX_K + 1) if k not in (10, 100)))
"""--eval_ks of tfrec rows: the HR@K curve; 10 first so that `--monitor=auto` still means val_HR@10."""

SHARED_DATA = os.path.join(REPO_ROOT, "..", "shared", "data")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A benchmarked data set.

    Attributes:
      name: the --dataset value; also names its results directory, section and plot.
      title: the section title.
      data_flags: callable(data_dir) -> the `tfrec.train` flags that read it.
      default_dir: its directory when --data_dir is not given.
      protocol_note: the users and standard error sentence of its section.
      section: the BENCHMARKS.md marker of its section.
      results: its results directory under bench_results/.
      plot: its HR@K plot under docs/.
    """

    name: str
    title: str
    data_flags: object
    default_dir: str
    protocol_note: str
    section: str
    results: str
    plot: str


def _movielens_flags(directory):
    return (f"--source=movielens:{directory}",)


def _office_flags(directory):
    return (f"--source=table:interactions={directory}/interactions.csv,items={directory}/items.csv",
            "--time_col=position", "--text_cols=title,brand,categories,description")


DATASETS = {
    "ml100k": Dataset("ml100k", "MovieLens-100K", _movielens_flags,
                      os.environ.get("TFREC_DATA_DIR") or os.path.join(SHARED_DATA, "ml-100k"),
                      "943 test users: one standard error on HR@10 is about 0.01.",
                      "bench_quality", "quality", "hr_at_k.png"),
    "office": Dataset("office", "Amazon Office products", _office_flags, os.path.join(SHARED_DATA, "amazon-office"),
                      "4,905 test users, behaviour positions as time: one standard error on HR@10 is about 0.005.",
                      "bench_quality_office", "quality_office", "hr_at_k_office.png"),
}

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "ml100k", list(DATASETS), "Data set whose rows run and whose table is rebuilt.")
flags.DEFINE_string("data_dir", None, "The data set's directory; default: TFREC_DATA_DIR or ../shared/data/ml-100k "
                    "for ml100k, ../shared/data/amazon-office for office.")
flags.DEFINE_list("only", [], "Rows to run (names from ROWS); empty: all; 'none': only rebuild the table.")
flags.DEFINE_string("results_dir", None, "Per-row JSON results; default: bench_results/<the dataset's results>.")
flags.DEFINE_string("runs_dir", os.path.join(REPO_ROOT, "runs", "bench_quality"), "Run directories of tfrec rows.")
flags.DEFINE_string("benchmarks_md", os.path.join(REPO_ROOT, "BENCHMARKS.md"), "Markdown file receiving the table.")
flags.DEFINE_string("plot", None, "PNG of HR@K for K = 1..100; default: docs/<the dataset's plot>.")
flags.DEFINE_integer("converged_epochs", 30, "Epoch budget of the 'converged' TFRS ranking row.")
flags.DEFINE_integer("converged_retrieval_epochs", 10,
                     "Epoch budget of the 'converged' TFRS retrieval row (its best validation epoch is 3).")
flags.DEFINE_list("seeds", [], "Seeds for the selected seeded rows instead of their own (e.g. 0 for a quick run).")


# --------------------------------------------------------------------------- data


def _train_flag_values(arguments):
    """`tfrec.train`'s flags parsed from `arguments`."""
    from tfrec import train

    values = flags.FlagValues()
    train.define_flags(values)
    values(["tfrec.train", *arguments])
    return values


class Context:
    """Loads a data set once, and each split once: vocabulary, train examples,
    full-history evaluation examples."""

    def __init__(self, dataset, data_dir):
        from tfrec import train

        self.data_flags = dataset.data_flags(data_dir)
        self.data_config = train.configs_from_flags(_train_flag_values(self.data_flags))[0]
        self.dataset = self.data_config.load_tables()
        self.vocab = data.Vocabulary.from_data(self.dataset)
        self._splits = {}

    def split(self, name):
        """{"split", "train", "valid", "test"}: train examples (targets only) and
        valid/test examples whose history holds every earlier interaction."""
        if name not in self._splits:
            split = data.split_interactions(self.dataset, name)
            parts = full_history_examples(self.dataset, split, self.vocab)
            parts["split"] = split
            self._splits[name] = parts
        return self._splits[name]


def evaluate_scores(scores, examples):
    """Ranking metrics and the HR@K curve of full-catalogue scores on full-history examples."""
    ranks = metrics.target_ranks(scores, examples[schema.TARGET_ITEM_ID], examples[schema.HISTORY_ITEM_IDS])
    return metrics.metrics_from_ranks(ranks, ks=(10, 100)), metrics.hit_rate_curve_from_ranks(ranks, MAX_K).tolist()


def random_hit_rate(examples, num_items, k=MAX_K):
    """Expected HR@k of a uniformly random ranking: mean over examples of min(1, k / positions)."""
    history, targets = examples[schema.HISTORY_ITEM_IDS], examples[schema.TARGET_ITEM_ID]
    excluded = np.array([np.setdiff1d(row[row > 0], [target]).size for row, target in zip(history, targets)])
    return float(np.mean(np.minimum(1.0, k / (num_items - excluded))))


def test_examples(context, split_name):
    """The split's test examples; for COLD_SPLIT only those whose target is a cold item."""
    parts = context.split(split_name)
    if split_name != COLD_SPLIT:
        return parts["test"], slice(None)
    cold = context.vocab.item_index(sorted(parts["split"].cold_items))
    keep = np.isin(parts["test"][schema.TARGET_ITEM_ID], cold)
    return {name: values[keep] for name, values in parts["test"].items()}, keep


# --------------------------------------------------------------------------- rows


@dataclasses.dataclass(frozen=True)
class Row:
    """A benchmark row.

    Attributes:
      datasets: the names of the data sets (`DATASETS`) it runs on.
      name: key for --only and the results file name.
      label: the model column of the table.
      split: MAIN_SPLIT (main table) or COLD_SPLIT (cold-start table).
      seeds: seeds to run; `DETERMINISTIC` for rows whose result no seed changes.
      run: callable(context, seed, row) -> dict with "metrics", optionally
        "curve" (HR@1..100), "train_seconds", "notes".
      flagfile: for tfrec rows, the flagfile (the row runs only if it exists).
      extra_flags: for tfrec rows, flags appended after the flagfile.
    """

    datasets: tuple
    name: str
    label: str
    split: str
    seeds: tuple
    run: object
    flagfile: str = None
    extra_flags: tuple = ()

    def missing(self):
        """Why the row cannot run now, or None."""
        if self.flagfile and not os.path.exists(os.path.join(REPO_ROOT, self.flagfile)):
            return f"{self.flagfile} does not exist yet"
        return None


def _ranking_baseline(make, guide_fit=("train",)):
    """A row fitting `make(context)` on train; on the main split it also records the
    metrics under the reference conventions of docs/evaluation.md (ties after the target, fitted on
    the parts `guide_fit`)."""

    def run(context, seed, row):
        parts = context.split(row.split)
        test, _ = test_examples(context, row.split)
        start = time.perf_counter()
        model = make(context).fit(parts["train"])
        seconds = time.perf_counter() - start
        result, curve = evaluate_scores(model.score(test), test)
        record = {"metrics": result, "curve": curve, "train_seconds": seconds}
        if row.split == MAIN_SPLIT:
            targets_only = [name for name, values in parts["train"].items() if values.ndim == 1]
            fit_on = {name: np.concatenate([parts[part][name] for part in guide_fit]) for name in targets_only}
            scores = make(context).fit(fit_on).score(test)
            record["guide_convention"] = metrics.ranking_metrics(
                scores, test[schema.TARGET_ITEM_ID], test[schema.HISTORY_ITEM_IDS], ties="optimistic"
            )
            record["guide_fit"] = list(guide_fit)
        return record

    return run


def _rating_baseline(make):
    def run(context, seed, row):
        parts = context.split(row.split)
        start = time.perf_counter()
        model = make(context).fit(parts["train"])
        seconds = time.perf_counter() - start
        test = parts["test"]
        return {
            "metrics": metrics.rating_metrics(model.predict(test), test[schema.TARGET_RATING]),
            "train_seconds": seconds,
        }

    return run


def _tfrs(task, epochs, select_epoch):
    def run(context, seed, row):
        parts = context.split(row.split)
        out = tfrs_runner.run_tfrs(
            task,
            epochs() if callable(epochs) else epochs,
            parts,
            context.vocab.num_users,
            context.vocab.num_items,
            os.path.join(FLAGS.runs_dir, FLAGS.dataset, "tfrs"),
            seed=seed,
            select_epoch=select_epoch,
        )
        result = {"train_seconds": float(out["train_seconds"]), "notes": f"epoch {int(out['best_epoch'])}"}
        if task == "ranking":
            result["metrics"] = metrics.rating_metrics(out["test_pred"], parts["test"][schema.TARGET_RATING])
            return result
        test, keep = test_examples(context, row.split)
        result["metrics"], result["curve"] = evaluate_scores(out["test_scores"][keep], test)
        return result

    return run


def _tfrec(context, seed, row):
    """Trains a tfrec model with `tfrec.Trainer` on the configs of `row.flagfile` (the
    flags `python -m tfrec.train` would read) and returns its run's metrics."""
    import keras

    from tfrec import train
    from tfrec.training import Trainer
    from tfrec.training import run_dir as run_files

    run_dir = os.path.join(FLAGS.runs_dir, FLAGS.dataset, row.name, f"seed{seed}")
    shutil.rmtree(run_dir, ignore_errors=True)
    arguments = [
        *([f"--flagfile={row.flagfile}"] if row.flagfile else []),
        *context.data_flags,
        f"--run_dir={run_dir}",
        f"--seed={seed}",
        f"--split={row.split}",
        "--eval_ks=" + ",".join(str(k) for k in CURVE_KS),
        "--verbose=0",
        *row.extra_flags,
    ]
    data_config, model_config, train_config = train.configs_from_flags(_train_flag_values(arguments))
    start = time.perf_counter()
    trainer = Trainer(train_config)
    prepared = data.prepare(data_config)
    run_metrics = trainer.fit(trainer.build_model(model_config, prepared), prepared, run_dir=run_dir).metrics
    seconds = time.perf_counter() - start
    keras.backend.clear_session()
    monitor = train_config.monitor_for(model_config)
    log = [record for record in run_files.RunDirectory(run_dir).read_training_log() if record["event"] == "epoch"]
    best = max(log, key=lambda record: record[monitor] * (-1 if monitor == "val_RMSE" else 1))
    run_metrics["best_epoch"] = best["epoch"]
    curve = [run_metrics[f"HR@{k}"] for k in range(1, MAX_K + 1)] if f"HR@{MAX_K}" in run_metrics else None
    numbers = {key: value for key, value in run_metrics.items() if isinstance(value, (int, float))}
    valid = {key: run_metrics["valid"][key] for key in TABLE_METRICS if key in run_metrics["valid"]}
    return {"metrics": numbers, "valid_metrics": valid, "curve": curve, "train_seconds": seconds,
            "command": shlex.join(["python", "-m", "tfrec.train", *arguments])}


def _tfrec_row(name, label, flagfile, extra_flags=(), seeds=ONE_SEED, split=MAIN_SPLIT, datasets=("ml100k",)):
    """A row training tfrec on `flagfile` (None: the defaults) plus `extra_flags`."""
    return Row(datasets, name, label, split, seeds, _tfrec, flagfile=flagfile, extra_flags=tuple(extra_flags))


PROFILE_RECENT = (1, 3, 5, 10, 20, 50, None)
"""Candidate profile lengths of the "before fine-tuning" row (None: the whole history)."""
PROFILE_SEQUENCE_LENGTH = 128
"""BERT tokens per item text, as in configs/ml100k_retrieval.flags."""


def _text_profile(context, seed, row):
    """tfrec before fine-tuning: frozen MiniLM item text, user = mean of the latest
    history items' embeddings, the number of items chosen on the validation split."""
    from tfrec.text_encoder import TextEncoder

    parts = context.split(row.split)
    test, _ = test_examples(context, row.split)
    start = time.perf_counter()
    texts = data.item_texts(context.dataset.items, context.vocab)
    vectors = TextEncoder("minilm", sequence_length=PROFILE_SEQUENCE_LENGTH).encode_in_batches(texts)
    valid = parts["valid"]

    def valid_ndcg(recent):
        return evaluate_scores(baselines.TextProfile(vectors, recent).score(valid), valid)[0]["NDCG@10"]

    recent = max(PROFILE_RECENT, key=valid_ndcg)
    seconds = time.perf_counter() - start
    result, curve = evaluate_scores(baselines.TextProfile(vectors, recent).score(test), test)
    latest = {None: "the whole history", 1: "the last item"}.get(recent, f"the last {recent} items")
    notes = f"profile of {latest} (chosen on valid)"
    return {"metrics": result, "curve": curve, "train_seconds": seconds, "notes": notes}


def _converged_epochs():
    return FLAGS.converged_epochs


def _converged_retrieval_epochs():
    return FLAGS.converged_retrieval_epochs


def _popularity(context):
    return baselines.Popularity(context.vocab.num_items)


def _transitions(context):
    return baselines.Transitions(context.vocab.num_items)


def _item_knn(context):
    return baselines.ItemKNN(context.vocab.num_items)


TRAIN_VALID = ("train", "valid")
BEHAVIOUR_TEXT_FLAGS = (
    # Every step runs BERT over each verbalised history (nothing to cache),
    # about 2 s per batch of 32 here: 120 steps, 3,840 histories; measured
    # with 32-token item texts (the fine-tuned item tower costs more at 128).
    "--behaviour_text=true", "--encoder_trainable=top:2", "--behaviour_text_length=64", "--batch_size=32",
    "--steps_per_epoch=40", "--epochs=3", "--learning_rate=1e-3", "--early_stopping_patience=3",
    "--sequence_length=32",
)
EARLIER_CONFIG = ("--epochs=40", "--early_stopping_patience=8", "--sequence_length=32")
"""The retrieval config before it moved to 80 epochs and whole item texts; rows measured with it keep it."""
ML, OFFICE, BOTH = ("ml100k",), ("office",), ("ml100k", "office")
ROWS = [
    Row(BOTH, "popularity", "popularity (train counts)", MAIN_SPLIT, DETERMINISTIC, _ranking_baseline(_popularity)),
    Row(BOTH, "tfrs_retrieval_3", "TFRS basic retrieval, 3 epochs (as published)", MAIN_SPLIT, ONE_SEED,
        _tfrs("retrieval", 3, False)),
    Row(BOTH, "tfrs_retrieval_converged", "TFRS basic retrieval, converged (epoch by valid NDCG@10)", MAIN_SPLIT, ONE_SEED,
        _tfrs("retrieval", _converged_retrieval_epochs, True)),
    Row(ML, "tfrs_ranking_3", "TFRS basic ranking, 3 epochs (as published)", MAIN_SPLIT, ONE_SEED,
        _tfrs("ranking", 3, False)),
    Row(ML, "tfrs_ranking_converged", "TFRS basic ranking, converged (epoch by valid RMSE)", MAIN_SPLIT, ONE_SEED,
        _tfrs("ranking", _converged_epochs, True)),
    Row(BOTH, "transitions", "item-to-item transitions (last 5, within 3 steps, 0.8^age)", MAIN_SPLIT, DETERMINISTIC,
        _ranking_baseline(_transitions, TRAIN_VALID)),
    Row(BOTH, "item_knn", "item-kNN (cosine co-occurrence)", MAIN_SPLIT, DETERMINISTIC,
        _ranking_baseline(_item_knn, TRAIN_VALID)),
    Row(ML, "biases", "user + item biases (lambda 5)", MAIN_SPLIT, DETERMINISTIC,
        _rating_baseline(lambda c: baselines.Biases(c.vocab.num_items, c.vocab.num_users))),
    Row(ML, "global_mean", "global mean rating", MAIN_SPLIT, DETERMINISTIC,
        _rating_baseline(lambda c: baselines.GlobalMean(c.vocab.num_items))),
    Row(BOTH, "tfrec_before", "tfrec before fine-tuning: frozen MiniLM, user = mean of history item text",
        MAIN_SPLIT, DETERMINISTIC, _text_profile),
    _tfrec_row("tfrec_retrieval", "tfrec retrieval: frozen MiniLM text + item ids, causal transformer",
               "configs/ml100k_retrieval.flags", seeds=SEEDS),
    _tfrec_row("tfrec_retrieval_ids", "tfrec retrieval: item ids only (no text)", "configs/ml100k_retrieval.flags",
               ["--use_text=false"], seeds=SEEDS),
    _tfrec_row("tfrec_behaviour_text",
               "tfrec retrieval: behaviour-text mode (last 10 ratings verbalised, MiniLM top 2 layers fine-tuned)",
               "configs/ml100k_retrieval.flags", BEHAVIOUR_TEXT_FLAGS),
    _tfrec_row("tfrec_ranking", "tfrec ranking (rating)", "configs/ml100k_ranking.flags"),
    _tfrec_row("tfrec_multitask", "tfrec multitask (retrieval + rating)", "configs/ml100k_multitask.flags"),
    Row(BOTH, "cold_popularity", "popularity (train counts)", COLD_SPLIT, DETERMINISTIC, _ranking_baseline(_popularity)),
    Row(BOTH, "cold_transitions", "item-to-item transitions", COLD_SPLIT, DETERMINISTIC, _ranking_baseline(_transitions)),
    Row(BOTH, "cold_item_knn", "item-kNN", COLD_SPLIT, DETERMINISTIC, _ranking_baseline(_item_knn)),
    Row(ML, "cold_tfrs_retrieval_3", "TFRS basic retrieval, 3 epochs", COLD_SPLIT, (0,), _tfrs("retrieval", 3, False)),
    _tfrec_row("cold_tfrec_retrieval",
               "tfrec retrieval: frozen MiniLM text + item ids (id dropout 0.5), 40 epochs, 32 tokens",
               "configs/ml100k_retrieval.flags", ["--id_dropout=0.5", *EARLIER_CONFIG], seeds=SEEDS, split=COLD_SPLIT),
    _tfrec_row("cold_tfrec_retrieval_ids", "tfrec retrieval: item ids only (no text), 40 epochs",
               "configs/ml100k_retrieval.flags", ["--use_text=false", *EARLIER_CONFIG], seeds=SEEDS,
               split=COLD_SPLIT),
    _tfrec_row("tfrec_defaults", "tfrec retrieval: the defaults (no flag but the data's)", None, datasets=BOTH),
    _tfrec_row("office_retrieval", "tfrec retrieval: `office_retrieval` config", "configs/office_retrieval.flags",
               datasets=OFFICE),
    _tfrec_row("office_retrieval_ids", "tfrec retrieval: item ids only (no text)", "configs/office_retrieval.flags",
               ["--use_text=false"], datasets=OFFICE),
]


def dataset_rows(dataset_name):
    """The rows of a data set, by name."""
    return {row.name: row for row in ROWS if dataset_name in row.datasets}


# --------------------------------------------------------------------------- running


def run_row(context, row, results_dir):
    """Runs every seed of a row and saves the result JSON; returns it."""
    runs = []
    seeds = row.seeds or (0,)
    if FLAGS.seeds and row.seeds != DETERMINISTIC:
        seeds = tuple(int(seed) for seed in FLAGS.seeds)
    for seed in seeds:
        print(f"[bench_quality] {row.name} seed {seed} ...", flush=True)
        result = row.run(context, seed, row)
        result["seed"] = seed
        runs.append(result)
        print(f"[bench_quality] {row.name} seed {seed}: {_brief(result)}", flush=True)
    record = {
        "row": row.name,
        "label": row.label,
        "split": row.split,
        "seeds": list(seeds),
        "runs": runs,
        "data_flags": list(context.data_flags),
        "command": shlex.join(["python", os.path.relpath(os.path.abspath(sys.argv[0]), REPO_ROOT), *sys.argv[1:]]),
        "machine": benchlib.machine(),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if row.split == COLD_SPLIT:
        test, _ = test_examples(context, COLD_SPLIT)
        record["cold_test_targets"] = len(test[schema.TARGET_ITEM_ID])
        record["random_hr_at_100"] = random_hit_rate(test, context.vocab.num_items)
    benchlib.write_atomic(os.path.join(results_dir, f"{row.name}.json"), json.dumps(record, indent=1))
    return record


def _brief(result):
    return ", ".join(f"{key} {result['metrics'][key]:.4f}" for key in TABLE_METRICS if key in result["metrics"])


def load_results(results_dir, rows):
    """Saved results of `rows` by row name."""
    results = {}
    for row in rows:
        path = os.path.join(results_dir, f"{row.name}.json")
        if os.path.exists(path):
            with open(path) as f:
                results[row.name] = json.load(f)
    return results


# --------------------------------------------------------------------------- table


def _cell(values, digits=4):
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def _seconds(values):
    if not values:
        return "—"
    mean = float(np.mean(values))
    return f"{mean:.1f} s" if mean < 120 else f"{mean / 60:.1f} min"


def _metric_values(record, key):
    return [run["metrics"][key] for run in record["runs"] if key in run["metrics"]]


def _not_run(row):
    reason = row.missing()
    return f"not run: {reason}" if reason else f"not run yet (`--only={row.name}`)"


def _table(results, rows, split, columns, cells):
    """Markdown table of the `rows` of `split`: model, seeds, then `columns` filled by `cells(record)`.

    A row without a saved result says why in its last column.
    """
    lines = ["| " + " | ".join(["model", "seeds", *columns]) + " |", "|" + "---|" * (len(columns) + 2)]
    for row in (row for row in rows if row.split == split):
        record = results.get(row.name)
        if record is None:
            seeds, values = "—", ["—"] * (len(columns) - 1) + [_not_run(row)]
        else:
            seeds = "deterministic" if row.seeds == DETERMINISTIC else len(record["runs"])
            values = cells(record)
        lines.append("| " + " | ".join([row.label, str(seeds), *values]) + " |")
    return "\n".join(lines)


def _notes(run):
    """A run's notes; for tfrec rows the epochs trained (from metrics.json)."""
    if run.get("notes"):
        return run["notes"]
    found = run["metrics"]
    if "epochs" not in found:
        return ""
    best = f", best {int(found['best_epoch'])}" if "best_epoch" in found else ""
    planned = f" of {int(found['max_epochs'])}" if "max_epochs" in found else ""
    return f"{int(found['epochs'])}{planned} epochs trained{best}"


def _main_cells(record):
    cells = [_cell(_metric_values(record, key), 3 if key == "RMSE" else 4) for key in TABLE_METRICS]
    wall = _seconds([run["train_seconds"] for run in record["runs"] if "train_seconds" in run])
    notes = "; ".join(sorted({_notes(run) for run in record["runs"]} - {""}))
    return [*cells, wall, notes]


def _cold_cells(record):
    hr = _cell(_metric_values(record, "HR@100"))
    return [str(record["cold_test_targets"]), hr, f"{record['random_hr_at_100']:.4f}"]


def main_table(results, rows):
    return _table(results, rows, MAIN_SPLIT, [*TABLE_METRICS, "train wall time", "notes"], _main_cells)


def cold_table(results, rows):
    columns = ["cold test targets", "HR@100 on cold targets", "random ranking HR@100"]
    return _table(results, rows, COLD_SPLIT, columns, _cold_cells)


def plot_curves(results, rows, title, path):
    """Plots the mean HR@K curve of every main-split row that has one; returns the rows plotted."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(8, 5))
    plotted = []
    ks = np.arange(1, MAX_K + 1)
    for row in (row for row in rows if row.split == MAIN_SPLIT):
        record = results.get(row.name)
        curves = [run["curve"] for run in record["runs"] if run.get("curve")] if record else []
        if curves:
            axes.plot(ks, np.mean(curves, axis=0), label=row.label)
            plotted.append(row.name)
    axes.set_xlabel("K")
    axes.set_ylabel("HR@K (test, full catalogue)")
    axes.set_title(f"{title}, {MAIN_SPLIT}: HR@K")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper left")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = path + ".tmp.png"
    figure.savefig(temporary, dpi=110, bbox_inches="tight")
    pyplot.close(figure)
    os.replace(temporary, path)
    return plotted


def guide_paragraph(results):
    """How the baseline rows compare with the reference figures of docs/evaluation.md."""
    figures = []
    for name in ("popularity", "transitions", "item_knn"):
        record = results.get(name)
        if record and "guide_convention" in record["runs"][0]:
            values = record["runs"][0]["guide_convention"]
            fitted = " + ".join(record["runs"][0]["guide_fit"])
            figures.append(
                f"{record['label'].split(' (')[0]} (fitted on {fitted}) "
                + " / ".join(f"{values[key]:.4f}" for key in ("HR@10", "NDCG@10", "Recall@100"))
            )
    return (
        "Against the reference figures of docs/evaluation.md: the reference ranks ties after the target (optimistic) and "
        "fits transitions and item-kNN on the train + validation interactions. Under those conventions the "
        "same code gives (HR@10 / NDCG@10 / Recall@100): "
        + ("; ".join(figures) if figures else "— (rows not run)")
        + ", the reference values being popularity 0.0498 / 0.0255 / 0.2354, transitions 0.1516 / 0.0785 / "
        "0.5376, item-kNN 0.0594 / 0.0281 / 0.3022. TFRS rows differ from the reference by training noise: "
        "TensorFlow's multi-threaded CPU kernels make even two runs with the same seed differ, so compare the "
        "means over seeds."
    )


def section(results, dataset, plot_path, benchmarks_md):
    """The markdown between the data set's bench_quality markers."""
    rows = dataset_rows(dataset.name).values()
    # Machine lines differ only in their load average: state the machine once.
    loads, machines = collections.defaultdict(set), set()
    for record in results.values():
        machine, _, load = record["machine"].partition(", load average ")
        machines.add(machine)
        loads[record["command"]].add(load.split(" ")[0] or "?")
    runs = [f"- `{command}` (load {', '.join(sorted(loads[command], key=float))})" for command in sorted(loads)]
    plot_link = os.path.relpath(plot_path, os.path.dirname(os.path.abspath(benchmarks_md)))
    return "\n".join(
        [
            f"## Quality on {dataset.title} (`scripts/bench_quality.py --dataset={dataset.name}`)",
            "",
            "Protocol (docs/evaluation.md): `leave_last_out` split (per user, sorted by timestamp then item id: last "
            "interaction = test, the one before = validation, the rest = train); every catalogue item is a "
            "candidate; every item the user met before the target is excluded; ties with the target are ranked "
            f"before it (conservative). {dataset.protocol_note} Metrics on the "
            "test targets; mean ± standard deviation over seeds where several seeds ran. Baselines are fitted on "
            "the train interactions only. Train wall time: fitting only for the baselines and TFRS rows (TFRS on "
            "its own process, excluding the per-epoch validation), the whole `tfrec.Trainer` fit (data preparation included) for "
            "tfrec rows; each tfrec row also saves its validation figures in its results file.",
            "",
            main_table(results, rows),
            "",
            f"![HR@K for K = 1..{MAX_K}]({plot_link})",
            "",
            "### Cold items",
            "",
            "`cold_items` split: 10% of the items appear in no training interaction; half of them form the "
            "validation targets, half the test targets. HR@100 on the test targets that are cold items, against "
            "the expectation of a uniformly random ranking of the same candidates.",
            "",
            cold_table(results, rows),
            "",
            *([guide_paragraph(results), ""] if dataset.name == "ml100k" else []),
            f"Machine: {'; '.join(sorted(machines))}, cores shared with other jobs. Commands, with the 1-minute "
            "load average as each of their rows started:" if runs else "Commands: none run yet.",
            "",
            *runs,
        ]
    )


def main(argv):
    del argv
    dataset = DATASETS[FLAGS.dataset]
    rows_by_name = dataset_rows(dataset.name)
    results_dir = FLAGS.results_dir or os.path.join(REPO_ROOT, "bench_results", dataset.results)
    plot = FLAGS.plot or os.path.join(REPO_ROOT, "docs", dataset.plot)
    if FLAGS.only == ["none"]:
        selected = []
    else:
        unknown = sorted(set(FLAGS.only) - set(rows_by_name))
        if unknown:
            raise app.UsageError(f"--only: unknown row(s) {unknown} for --dataset={dataset.name}; "
                                 f"its rows are {list(rows_by_name)}")
        selected = [rows_by_name[name] for name in FLAGS.only] if FLAGS.only else list(rows_by_name.values())
    runnable = [row for row in selected if not row.missing()]
    for row in selected:
        if row.missing():
            print(f"[bench_quality] skipping {row.name}: {row.missing()}", flush=True)
    if runnable:
        context = Context(dataset, FLAGS.data_dir or dataset.default_dir)
        for row in runnable:
            run_row(context, row, results_dir)
    results = load_results(results_dir, rows_by_name.values())
    plot_curves(results, rows_by_name.values(), dataset.title, plot)
    text = section(results, dataset, plot, FLAGS.benchmarks_md)
    benchlib.write_section(FLAGS.benchmarks_md, dataset.section, text)
    print(text)


if __name__ == "__main__":
    app.run(main)
