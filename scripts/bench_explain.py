"""Faithfulness and cost of the behaviour influences (`Recommender.explain`).

For each trained run (--runs=NAME=RUN_DIR,...), on its test users with at
least `MIN_HISTORY` behaviours in the model's window (--users of them,
sampled), the model's top recommendation (history excluded) is explained by
occlusion; then m = 1, 3, 5 behaviours are removed from the history:

- the m with the largest influence on that item,
- the same greedily: the largest, then the largest of the history explained
  again without it, and so on (m explain calls; behaviours that stand in for
  each other each have a small influence alone),
- m chosen at random,
- the m most recent,

and the item is scored again after the shortened history. The table gives the
mean drop of its score and its mean and median rank afterwards (it was rank 1),
over the whole catalogue less the original history. Integrated gradients
(`STEPS` points) run on the same users: the mean Spearman correlation of its
influences with occlusion's over each history.

Cost: the run is exported and served by the embedded server (its own process,
over loopback gRPC); `recommend` (k = 10) and `explain` (10 candidates) of a
`LATENCY_HISTORY`-behaviour history alternate for --requests calls each.

Usage:
  nice .venv/bin/python scripts/bench_explain.py --runs=ml100k=runs/ml,office=runs/office
"""

import os
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np
import benchlib
from absl import app, flags

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import tensorflow as tf  # noqa: E402

from tfrec.client import RecommenderClient  # noqa: E402
from tfrec.data import schema  # noqa: E402
from tfrec.exporting import exporter  # noqa: E402
from tfrec.models import influence  # noqa: E402
from tfrec.models.features import history_features  # noqa: E402
from tfrec.training import load_run_data  # noqa: E402

REMOVED = (1, 3, 5)
MIN_HISTORY = 2 * max(REMOVED)
STRATEGIES = ("top influence", "top influence, greedy", "random", "most recent")
STEPS = 16
BATCH = 32
LATENCY_HISTORY = 50
LATENCY_CANDIDATES = 10

FLAGS = flags.FLAGS
flags.DEFINE_list("runs", [], "NAME=RUN_DIR pairs: finished tfrec retrieval runs to explain.")
flags.DEFINE_integer("users", 500, "Test users sampled per run.")
flags.DEFINE_integer("requests", 100, "Timed recommend and explain calls each.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_string("benchmarks_md", os.path.join(REPO_ROOT, "BENCHMARKS.md"), "Markdown file receiving the tables.")


def _context(features):
    """The `history_features` context of schema features (the history's own ratings, times, events)."""
    return {"ratings": features[schema.HISTORY_RATINGS], "timestamps": features[schema.HISTORY_TIMESTAMPS],
            "events": features[schema.HISTORY_EVENTS], "now": features[schema.TARGET_TIMESTAMP],
            "users": features[schema.USER_INDEX]}


def _scores_and_ranks(model, indices, context, items, exclude):
    """The score of `items` [B] after histories `indices` and their rank over the catalogue less `exclude`."""
    features = history_features(indices, context=context, default_event=model.default_event)
    scores = model.catalogue.scores(model.query_embeddings(features)).numpy()
    scores[:, 0] = -np.inf
    np.put_along_axis(scores, exclude, -np.inf, axis=1)
    own = scores[np.arange(len(items)), items]
    return own, 1 + (scores > own[:, None]).sum(axis=1)


def _spearman(a, b):
    rank = lambda values: np.argsort(np.argsort(values)).astype(float)  # noqa: E731
    ra, rb = rank(a), rank(b)
    return float(np.corrcoef(ra, rb)[0, 1]) if ra.std() > 0 and rb.std() > 0 else 0.0


def _removal_mask(strategy, values, real, m, rng):
    """bool [L]: the m behaviours `strategy` removes from one history (`real` marks its behaviours)."""
    positions = np.flatnonzero(real)
    if strategy == "top influence":
        chosen = positions[np.argsort(-values[positions], kind="stable")[:m]]
    elif strategy == "random":
        chosen = rng.choice(positions, m, replace=False)
    else:  # histories are oldest first: the most recent are the last positions
        chosen = positions[-m:]
    mask = np.zeros_like(real)
    mask[chosen] = True
    return mask


def _greedy_order(model, history, top, context, count):
    """[B, count] positions: each row's largest influence, then the largest once that one is removed, ..."""
    current, chosen = history.copy(), []
    for _ in range(count):
        values = influence.occlusion_influence(model, tf.constant(current, tf.int32), top, context)[0].numpy()[:, 0]
        values = np.where(current > 0, values, -np.inf)
        picked = values.argmax(axis=1)
        chosen.append(picked)
        current[np.arange(len(current)), picked] = 0
    return np.stack(chosen, axis=1)


def faithfulness(model, examples, users, rng):
    """Per (m, strategy): score drops and ranks; and the occlusion / integrated-gradients correlations."""
    lengths = (examples[schema.HISTORY_ITEM_IDS] > 0).sum(axis=1)
    eligible = np.flatnonzero(lengths >= MIN_HISTORY)
    rows = np.sort(rng.choice(eligible, min(users, len(eligible)), replace=False))
    drops = {(m, s): [] for m in REMOVED for s in STRATEGIES}
    ranks = {(m, s): [] for m in REMOVED for s in STRATEGIES}
    correlations = []
    for start in range(0, len(rows), BATCH):
        part = {name: tf.constant(values[rows[start:start + BATCH]]) for name, values in examples.items()}
        indices, context = part[schema.HISTORY_ITEM_IDS], _context(part)
        features = history_features(indices, context=context, default_event=model.default_event)
        _, top = model.catalogue.top_k(model.query_embeddings(features), 1, exclude=indices)
        occlusion, scores = influence.occlusion_influence(model, indices, top, context)
        gradients, _ = influence.integrated_gradients(model, indices, top, context, steps=STEPS)
        occlusion, gradients = occlusion.numpy()[:, 0], gradients.numpy()[:, 0]
        real, items, history = indices.numpy() > 0, top.numpy()[:, 0], indices.numpy()
        correlations += [_spearman(o[r], g[r]) for o, g, r in zip(occlusion, gradients, real)]
        greedy = _greedy_order(model, history, top, context, max(REMOVED))
        for m in REMOVED:
            for strategy in STRATEGIES:
                if strategy == "top influence, greedy":
                    masks = np.zeros_like(real)
                    np.put_along_axis(masks, greedy[:, :m], True, axis=1)
                else:
                    masks = np.stack([_removal_mask(strategy, o, r, m, rng) for o, r in zip(occlusion, real)])
                shortened = tf.constant(np.where(masks, 0, history), tf.int32)
                after, rank = _scores_and_ranks(model, shortened, context, items, history)
                drops[m, strategy] += list(scores.numpy()[:, 0] - after)
                ranks[m, strategy] += list(rank)
    return rows, drops, ranks, correlations


def latency(run_dir, model, examples, requests):
    """p50/p99 (ms) of recommend and explain over gRPC for one LATENCY_HISTORY-behaviour history."""
    ids = np.asarray(model.vocab.item_ids, dtype=object)
    history_rows = examples[schema.HISTORY_ITEM_IDS]
    longest = history_rows[np.argmax((history_rows > 0).sum(axis=1))]
    history = [str(i) for i in ids[longest[longest > 0]]][-LATENCY_HISTORY:]
    candidates = [str(i) for i in ids[1:LATENCY_CANDIDATES + 1]]
    with tempfile.TemporaryDirectory(prefix="bench-explain-") as base:
        exporter.export_run(run_dir, base, "explained")
        port = _free_port()
        server = subprocess.Popen([sys.executable, "-m", "tfrec.serve", "--model_name=explained",
                                   f"--model_base_path={base}/explained", f"--port={port}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with RecommenderClient(f"127.0.0.1:{port}", "explained", timeout=120) as client:
                client.wait_until_available(timeout=600, process=server)
                times = {"recommend": [], "explain": []}
                for call in range(requests + 5):  # the first 5 of each are warm-up
                    for name, send in (("recommend", lambda: client.recommend([history], k=10)),
                                       ("explain", lambda: client.explain([history], [candidates]))):
                        started = time.perf_counter()
                        send()
                        if call >= 5:
                            times[name].append(1000 * (time.perf_counter() - started))
        finally:
            server.terminate()
            server.wait(timeout=60)
    return {name: (float(np.percentile(values, 50)), float(np.percentile(values, 99)))
            for name, values in times.items()}, len(history)


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv):
    del argv
    if not FLAGS.runs:
        raise app.UsageError("--runs: give NAME=RUN_DIR pairs, e.g. --runs=ml100k=runs/ml")
    runs = []
    for pair in FLAGS.runs:
        name, _, directory = pair.partition("=")
        if not name or not directory or not os.path.isdir(directory):
            raise app.UsageError(f"--runs: {pair!r}: expected NAME=RUN_DIR with an existing run directory")
        runs.append((name, directory))
    faithful = ["| data | removed | removal | mean score drop | mean rank after | median rank after |",
                "|---|---|---|---|---|---|"]
    costs = ["| data | behaviours | recommend p50 / p99 (ms) | explain p50 / p99 (ms) | explain / recommend p50 |",
             "|---|---|---|---|---|"]
    agreement = []
    for name, directory in runs:
        run, prepared = load_run_data(directory)
        rng = np.random.default_rng(FLAGS.seed)
        started = time.perf_counter()
        rows, drops, ranks, correlations = faithfulness(run.model, prepared.examples["test"], FLAGS.users, rng)
        print(f"[bench_explain] {name}: {len(rows)} users explained in {time.perf_counter() - started:.0f} s",
              flush=True)
        for m in REMOVED:
            for strategy in STRATEGIES:
                faithful.append(f"| {name} | {m} | {strategy} | {np.mean(drops[m, strategy]):.4f} | "
                                f"{np.mean(ranks[m, strategy]):.1f} | {np.median(ranks[m, strategy]):.0f} |")
        agreement.append(f"{name}: {np.mean(correlations):.3f} over {len(rows)} users")
        times, behaviours = latency(directory, run.model, prepared.examples["test"], FLAGS.requests)
        (rp50, rp99), (ep50, ep99) = times["recommend"], times["explain"]
        costs.append(f"| {name} | {behaviours} | {rp50:.1f} / {rp99:.1f} | {ep50:.1f} / {ep99:.1f} | "
                     f"{ep50 / rp50:.2f} |")
        print("\n".join(faithful + [""] + costs), flush=True)
    command = shlex.join(["python", os.path.relpath(os.path.abspath(sys.argv[0]), REPO_ROOT), *sys.argv[1:]])
    text = "\n".join([
        "## Explanations (`scripts/bench_explain.py`)",
        "",
        f"Each run's top recommendation for up to {FLAGS.users} sampled test users with at least {MIN_HISTORY} "
        "behaviours in the model's window, explained by occlusion; then m behaviours are removed and the item "
        "scored again (it was rank 1 of the catalogue less the history). Removing the behaviours with the "
        "largest influence should hurt it most.",
        "",
        *faithful,
        "",
        f"Integrated gradients ({STEPS} points) against occlusion, mean Spearman correlation per history: "
        + "; ".join(agreement) + ".",
        "",
        f"Cost over loopback gRPC (embedded server, own process; recommend k = 10, explain "
        f"{LATENCY_CANDIDATES} candidates, calls alternating, {FLAGS.requests} each):",
        "",
        *costs,
        "",
        f"Command: `{command}`. Runs: " + ", ".join(f"{name} = `{directory}`" for name, directory in runs) + ".",
        f"Machine: {benchlib.machine()}.",
    ])
    benchlib.write_section(FLAGS.benchmarks_md, "bench_explain", text)
    print(text)


if __name__ == "__main__":
    app.run(main)
