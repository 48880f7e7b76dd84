"""Items added by a catalogue update, recommended from histories through the exported model.

A seeded --held_out share of the catalogue is taken out of the data: those
items and every behaviour on them. A model trains on the rest (the
leave-last-out protocol of docs/evaluation.md) and is exported; then it is
exported again with `--update_catalog` naming the held-out items' rows of the
item table, as an operator adds new products. Targets: every behaviour on a
held-out item after at least one earlier behaviour of its user; its history
the user's previous behaviours (new items included: they are served now).
The exported `recommend` signature ranks the whole served catalogue, the
history excluded: HR@100 over those targets, beside the expectation of a
random ranking of the same candidates, and beside the text nearest
neighbours of the history's last item (MiniLM vectors of the item texts, the
same candidates and exclusions: what the pretrained encoder alone finds). The
model's own test HR@10 (every target of its split) shows what the setting
costs on known items.

Usage:
  nice .venv/bin/python scripts/bench_new_items.py --dataset=ml100k --rows=defaults,id_dropout_0.5
"""

import dataclasses
import json
import os
import shlex
import sys
import tempfile
import time

import numpy as np
import benchlib
from absl import app, flags

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import tensorflow as tf  # noqa: E402

from tfrec.baselines.text_profile import TextProfile  # noqa: E402
from tfrec.data import Vocabulary, prepare, schema  # noqa: E402
from tfrec.data.texts import item_texts  # noqa: E402
from tfrec.text_encoder import TextEncoder  # noqa: E402
from tfrec.exporting import exporter  # noqa: E402
from tfrec.training import Trainer  # noqa: E402

SHARED_DATA = os.path.join(REPO_ROOT, "..", "shared", "data")
DATASETS = {
    "ml100k": ("MovieLens-100K", (f"--source=movielens:{os.path.join(SHARED_DATA, 'ml-100k')}",)),
    "office": ("Amazon Office products",
               (f"--source=table:interactions={SHARED_DATA}/amazon-office/interactions.csv,"
                f"items={SHARED_DATA}/amazon-office/items.csv", "--time_col=position",
                "--text_cols=title,brand,categories,description")),
}
ROWS = {
    "defaults": ("the defaults (id_dropout 0)", ()),
    "id_dropout_0.5": ("id_dropout 0.5", ("--id_dropout=0.5",)),
}
K = 100
BATCH = 256

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "ml100k", list(DATASETS), "Data set to run.")
flags.DEFINE_list("rows", list(ROWS), f"Rows to run, of {list(ROWS)}.")
flags.DEFINE_float("held_out", 0.1, "Share of the items taken out and added back by the update.")
flags.DEFINE_integer("seed", 0, "Seed of the held-out items and of the model.")
flags.DEFINE_list("train_flags", ["--sequence_length=64", "--early_stopping_patience=4", "--verbose=2"],
                  "tfrec.train flags of every row (beside the data set's and the row's).")
flags.DEFINE_string("results_dir", os.path.join(REPO_ROOT, "bench_results", "new_items"), "Per-row JSON results.")
flags.DEFINE_string("runs_dir", os.path.join(REPO_ROOT, "runs", "bench_new_items"), "Run directories.")
flags.DEFINE_string("benchmarks_md", os.path.join(REPO_ROOT, "BENCHMARKS.md"), "Markdown file receiving the table.")
flags.DEFINE_bool("table_only", False, "Only rebuild the table from the saved results.")


def _split_catalogue(tables):
    """(tables without the held-out items, the held-out item ids)."""
    items = tables.items[schema.ITEM_ID].to_numpy()
    rng = np.random.default_rng(FLAGS.seed)
    held = set(rng.choice(items, max(1, round(FLAGS.held_out * len(items))), replace=False))
    logs = tables.interactions[~tables.interactions[schema.ITEM_ID].isin(held)].reset_index(drop=True)
    kept_items = tables.items[~tables.items[schema.ITEM_ID].isin(held)].reset_index(drop=True)
    return dataclasses.replace(tables, interactions=logs, items=kept_items), held


def _write_update(tables, held, directory):
    """The held-out items' rows of the item table, as a CSV of the table source's columns."""
    path = os.path.join(directory, "new_items.csv")
    rows = tables.items[tables.items[schema.ITEM_ID].isin(held)]
    chosen = [c for c in rows.columns if c.startswith(schema.TEXT_COLUMN_PREFIX)]  # the run's --text_cols
    columns = [schema.ITEM_ID, *(chosen or schema.TEXT_FIELDS)]
    rows = rows[columns].rename(columns={c: c.removeprefix(schema.TEXT_COLUMN_PREFIX) for c in chosen})
    rows.to_csv(path, index=False)
    return path


def _targets(tables, held, history_length):
    """(histories [n, L] of item id strings, padded with "", target ids [n]) of behaviours on held-out items."""
    histories, targets = [], []
    for _, logs in tables.interactions.groupby(schema.USER_ID, sort=False):
        items = logs[schema.ITEM_ID].tolist()
        for position in range(1, len(items)):
            if items[position] in held:
                history = items[max(0, position - history_length):position]
                histories.append([""] * (history_length - len(history)) + history)
                targets.append(items[position])
    return np.array(histories, dtype=object), np.array(targets, dtype=object)


def _hit_rate(export_path, histories, targets, num_items):
    loaded = exporter.load(export_path)
    recommend = loaded.signatures["recommend"]
    hits, expected = 0, 0.0
    for start in range(0, len(targets), BATCH):
        part = histories[start:start + BATCH]
        out = recommend(history=tf.constant(part.tolist()), k=tf.fill([len(part)], K))
        ranked = out["item_ids"].numpy().astype(str)
        hits += int(sum(t in row for t, row in zip(targets[start:start + BATCH], ranked)))
        candidates = num_items - np.array([len(set(h) - {""}) for h in part])
        expected += float(np.sum(np.minimum(K / candidates, 1.0)))
    return hits / len(targets), expected / len(targets)


def _text_neighbour_hit_rate(tables, histories, targets, sequence_length):
    """HR@K of ranking the whole catalogue by the cosine of its MiniLM text vectors with the history's last item."""
    vocab = Vocabulary.from_data(tables)
    vectors = TextEncoder(sequence_length=sequence_length).cached_vectors(item_texts(tables.items, vocab)[1:])
    baseline = TextProfile(np.concatenate([np.zeros_like(vectors[:1]), vectors]), recent=1).fit({})
    hits = 0
    for start in range(0, len(targets), BATCH):
        part = np.stack([vocab.item_index(row) for row in histories[start:start + BATCH]])
        scores = baseline.score({schema.HISTORY_ITEM_IDS: part})
        scores[:, 0] = -np.inf
        np.put_along_axis(scores, part, -np.inf, axis=1)
        top = np.argsort(-scores, axis=1)[:, :K]
        wanted = vocab.item_index(targets[start:start + BATCH])
        hits += int((top == wanted[:, None]).any(axis=1).sum())
    return hits / len(targets)


def run_row(name):
    data_config, model_config, train_config = benchlib.train_configs(
        *DATASETS[FLAGS.dataset][1], *FLAGS.train_flags, *ROWS[name][1], f"--seed={FLAGS.seed}")
    tables = data_config.load_tables()
    kept, held = _split_catalogue(tables)
    data = prepare(data_config, tables=kept)
    run_dir = os.path.join(FLAGS.runs_dir, FLAGS.dataset, name)
    trainer = Trainer(train_config)
    started = time.time()
    result = trainer.fit(trainer.build_model(model_config, data), data, run_dir=run_dir)
    seconds = time.time() - started
    with tempfile.TemporaryDirectory() as scratch:
        update = _write_update(tables, held, scratch)
        exporter.export_run(run_dir, scratch, "model")
        export = exporter.export_run(run_dir, scratch, "model", exporter.ExportOptions(update_catalog=update))
        histories, targets = _targets(tables, held, data_config.history_length)
        hit_rate, random_rate = _hit_rate(export.path, histories, targets, export.num_items)
    text_rate = _text_neighbour_hit_rate(tables, histories, targets, model_config.sequence_length)
    record = {"row": name, "dataset": FLAGS.dataset, "held_out_items": len(held), "targets": len(targets),
              f"HR@{K}": hit_rate, "random": random_rate, "text_neighbours": text_rate,
              "test_HR@10": result.metrics["HR@10"],
              "test_NDCG@10": result.metrics["NDCG@10"], "epochs": result.metrics["epochs"], "seconds": seconds}
    path = os.path.join(FLAGS.results_dir, FLAGS.dataset, f"{name}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    benchlib.write_atomic(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(json.dumps(record), flush=True)


def _figure(value):
    return "not measured" if value is None else f"{value:.4f}"


def section():
    lines = ["## New items from a catalogue update (`scripts/bench_new_items.py`)", "",
             __doc__.split("Usage:")[0].strip().split("\n", 1)[1].strip(), ""]
    for dataset, (title, _) in DATASETS.items():
        lines += [f"### {title}", "", f"| model | new items | targets | HR@{K} on new items | random ranking | "
                  "ratio | text nearest neighbours | test HR@10 (known items) | epochs |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, (label, _) in ROWS.items():
            path = os.path.join(FLAGS.results_dir, dataset, f"{name}.json")
            if not os.path.exists(path):
                lines.append(f"| {label} | | | not run yet (`--dataset={dataset} --rows={name}`) | | | | | |")
                continue
            with open(path) as f:
                r = json.load(f)
            lines.append(f"| {label} | {r['held_out_items']} | {r['targets']} | {r[f'HR@{K}']:.4f} | "
                         f"{r['random']:.4f} | {r[f'HR@{K}'] / r['random']:.1f}x | "
                         f"{_figure(r.get('text_neighbours'))} | {r['test_HR@10']:.4f} | "
                         f"{r['epochs']} |")
        lines.append("")
    lines += [f"Settings: the defaults plus `{' '.join(FLAGS.train_flags)}` and the row's; seed {FLAGS.seed}.", "",
              f"Machine: {benchlib.machine()}.", "", f"Command: `{' '.join(shlex.quote(a) for a in sys.argv)}`"]
    return "\n".join(lines)


def main(argv):
    del argv
    unknown = sorted(set(FLAGS.rows) - set(ROWS))
    if unknown:
        raise app.UsageError(f"--rows: unknown {unknown}; expected some of {list(ROWS)}")
    if not FLAGS.table_only:
        for name in FLAGS.rows:
            run_row(name)
    text = section()
    benchlib.write_section(FLAGS.benchmarks_md, "bench_new_items", text)
    print(text)


if __name__ == "__main__":
    app.run(main)
