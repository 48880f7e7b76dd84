"""Quality exploration of tfrec models on MovieLens-100K (GUIDE section 3 protocol).

Trains one `ModelConfig` (overridden with `--set field=value`) for each seed with
early stopping on the validation metric, and prints a table of test figures
(retrieval: HR@10, NDCG@10, Recall@100, MRR over the full catalogue, every
earlier item excluded; ranking: RMSE on the held-out last ratings; with
`--split=cold_items`, HR@100 on test targets that are cold items, next to a
random ranking's HR@100).

Run it niced, the machine is shared. The best retrieval setting found so far
(frozen MiniLM text + ids, time gaps and ratings, SASRec-style windows of 100):

    nice -n 10 .venv/bin/python scripts/explore_retrieval.py --history_length=100 \\
        --batch_size=8 --learning_rate=2e-3 --epochs=40 --patience=8 \\
        --set=use_time_gaps=true --set=use_ratings=true

and the same with `--set=use_text=false` for the id-only comparison; ranking:

    nice -n 10 .venv/bin/python scripts/explore_retrieval.py --history_length=100 \\
        --batch_size=16 --epochs=30 --patience=5 --set=task=ranking \\
        --set=use_ratings=true --set=use_user_ids=true

cold items: `--split=cold_items --set=id_dropout=0.5`.
"""

import dataclasses
import json
import time

import keras
import numpy as np
from absl import app, flags

from tfrec import data
from tfrec.data import schema
from tfrec.evaluation import metrics
from tfrec.evaluation.full_history import full_history_examples
from tfrec.models import ModelConfig, build_model

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "../shared/data/ml-100k", "MovieLens-100K directory.")
flags.DEFINE_enum("split", "leave_last_out", ["leave_last_out", "cold_items"], "Split protocol.")
flags.DEFINE_integer("history_length", 200, "Behaviours per example history.")
flags.DEFINE_integer("epochs", 40, "Maximum epochs.")
flags.DEFINE_integer("patience", 6, "Stop after this many epochs without a better validation metric.")
flags.DEFINE_integer("batch_size", 64, "Examples per batch.")
flags.DEFINE_float("learning_rate", 1e-3, "AdamW learning rate.")
flags.DEFINE_float("weight_decay", 0.01, "AdamW weight decay.")
flags.DEFINE_list("seeds", ["0"], "Seeds; figures are averaged over them.")
flags.DEFINE_multi_string("set", [], "ModelConfig overrides, field=value.")
flags.DEFINE_string("output", None, "Optional JSON lines file to append the results to.")


def parse_overrides(pairs):
    """Turns ["embedding_dim=64", ...] into typed ModelConfig values."""
    types = {field.name: type(field.default) for field in dataclasses.fields(ModelConfig)}
    values = {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        if name not in types:
            raise ValueError(f"--set {pair!r}: unknown ModelConfig field {name!r}")
        kind = types[name]
        values[name] = text.lower() in ("1", "true", "yes") if kind is bool else kind(text)
    return values


def evaluate(model, part, exclusions, cold_items=None):
    """Test or valid figures of `model` on examples `part`."""
    result = {}
    if model.has_retrieval:
        scores = model.score_catalogue(part)
        targets = part[schema.TARGET_ITEM_ID]
        result.update(metrics.ranking_metrics(scores, targets, exclusions, ks=(10, 100)))
        if cold_items is not None:
            cold = np.isin(targets, cold_items)
            cold_metrics = metrics.ranking_metrics(scores[cold], targets[cold], exclusions[cold], ks=(100,))
            candidates = (scores.shape[1] - 1) - (exclusions[cold] > 0).sum(axis=1)
            result["cold_HR@100"] = cold_metrics["HR@100"]
            result["cold_random_HR@100"] = float(np.mean(np.minimum(100 / candidates, 1.0)))
            result["cold_targets"] = int(cold.sum())
    if model.has_ranking:
        rated = part[schema.TARGET_RATING] > 0
        predictions = model.predict_target({k: v[rated] for k, v in part.items()})
        result.update(metrics.rating_metrics(predictions, part[schema.TARGET_RATING][rated]))
    return result


def main(argv):
    del argv
    overrides = parse_overrides(FLAGS.set)
    ds = data.load(f"movielens:{FLAGS.data_dir}")
    split = data.split_interactions(ds, FLAGS.split)
    vocab = data.Vocabulary.from_data(ds)
    texts = data.item_texts(ds.items, vocab)
    examples = data.build_examples(ds, split, vocab, history_length=FLAGS.history_length)
    full = full_history_examples(ds, split, vocab)
    cold_items = vocab.item_index(sorted(split.cold_items)) if split.cold_items else None
    rows = []
    for seed in [int(s) for s in FLAGS.seeds]:
        cfg = ModelConfig(**dict(overrides, seed=seed)).validate()
        start = time.time()
        model = build_model(cfg, vocab, texts)
        train = model.train_examples(examples["train"])
        dataset = data.to_tf_dataset(train, batch_size=FLAGS.batch_size, seed=seed)
        model.compile(optimizer=keras.optimizers.AdamW(FLAGS.learning_rate, weight_decay=FLAGS.weight_decay,
                                                       clipnorm=1.0))
        key = "NDCG@10" if model.has_retrieval else "RMSE"
        sign = 1 if model.has_retrieval else -1
        best, best_weights, stale, epoch = -np.inf, None, 0, 0
        for epoch in range(1, FLAGS.epochs + 1):
            history = model.fit(dataset, epochs=1, verbose=0).history
            valid = evaluate(model, examples["valid"], full["valid"][schema.HISTORY_ITEM_IDS])
            print(f"seed {seed} epoch {epoch} loss {history['loss'][0]:.4f} valid {key} {valid[key]:.4f} "
                  f"({time.time() - start:.0f}s)", flush=True)
            if sign * valid[key] > best:
                best, best_weights, stale = sign * valid[key], model.get_weights(), 0
            else:
                stale += 1
                if stale >= FLAGS.patience:
                    break
        model.set_weights(best_weights)
        test = evaluate(model, examples["test"], full["test"][schema.HISTORY_ITEM_IDS], cold_items)
        test.update(seed=seed, epochs=epoch, seconds=round(time.time() - start), train_rows=len(train[schema.USER_INDEX]))
        print("seed", seed, json.dumps(test), flush=True)
        rows.append(test)
    names = [name for name in rows[0] if isinstance(rows[0][name], float)]
    print("\nconfig:", json.dumps(overrides), f"history_length={FLAGS.history_length}",
          f"lr={FLAGS.learning_rate} wd={FLAGS.weight_decay} batch={FLAGS.batch_size}")
    print("| " + " | ".join(["seed"] + names + ["epochs", "seconds"]) + " |")
    for row in rows:
        print("| " + " | ".join([str(row["seed"])] + [f"{row[n]:.4f}" for n in names]
                                + [str(row["epochs"]), str(row["seconds"])]) + " |")
    print("| mean | " + " | ".join(f"{np.mean([r[n] for r in rows]):.4f}" for n in names) + " | | |")
    if FLAGS.output:
        with open(FLAGS.output, "a") as handle:
            handle.write(json.dumps({"overrides": overrides, "history_length": FLAGS.history_length,
                                     "learning_rate": FLAGS.learning_rate, "rows": rows}) + "\n")


if __name__ == "__main__":
    app.run(main)
