"""`python -m tfrec.demo`: the main job end to end, on MovieLens-100K.

Describes the data, trains the demo config, evaluates it, exports it in TF
Serving's layout, starts a model server (TF Serving when its binary is on PATH,
else the embedded one), and prints through the client library the top-10
recommendations, with titles, for three users and the version that served
them, and for the top three the behaviours that raised their scores most
("because you rated Star Wars 5 (+0.210), ...", signature `explain`). The
stages call the library (`tfrec.data.prepare`, `tfrec.Trainer`,
`tfrec.training.evaluate_run`, `tfrec.exporting.export_run`); the model server
runs as its own process and is queried over gRPC, as in production:

    python -m tfrec.demo --data_dir=../shared/data/ml-100k

Without `--data_dir` (or `TFREC_DATA_DIR`) the data comes through
tensorflow-datasets, which needs a machine that reaches the internet.

Each stage prints a few lines, about 50 in all: the per-epoch figures are in
the run's training log and TensorBoard logs (on a terminal a progress bar
shows them; elsewhere the learning curve is printed once training ends).
`-v 0` adds the library's INFO logs, `-v 1` TensorFlow's too.
"""

import os
import pathlib
import subprocess
import sys
import time

from absl import app, flags

from tfrec import quiet

quiet.configure(__name__, default_verbosity=-1)  # before TensorFlow is imported
from tfrec import config_flags, launch, train  # noqa: E402
from tfrec.config import ConfigError  # noqa: E402
from tfrec.data import DataError, prepared, summary  # noqa: E402
from tfrec.evaluation import verdict  # noqa: E402
from tfrec.exporting import exporter  # noqa: E402
from tfrec.training import Trainer, checks, evaluate_run  # noqa: E402
from tfrec.training import run_dir as run_files  # noqa: E402
from tfrec.training.trainer import format_metrics  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
FLAGS = flags.FLAGS
EXPLAINED_RECOMMENDATIONS = 3  # recommendations per user printed with the behaviours behind them
EXPLAINED_BEHAVIOURS = 2  # behaviours named per explained recommendation


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the flags of `python -m tfrec.demo` in `flag_values`."""
    flags.DEFINE_string("data_dir", None, "MovieLens directory (100K, 1M or latest-small). Default: $TFREC_DATA_DIR.",
                        flag_values=flag_values)
    flags.DEFINE_string("config", str(REPO_ROOT / "configs" / "demo.flags"), "Flagfile of the model to train.",
                        flag_values=flag_values)
    flags.DEFINE_string("run_dir", "runs/demo", "Run directory of the training (a rerun resumes it).",
                        flag_values=flag_values)
    flags.DEFINE_string("export_base", "exports", "Base directory of exported models, in TF Serving's layout.",
                        flag_values=flag_values)
    flags.DEFINE_string("model_name", "tfrec_demo", "Name the model is exported and served under.",
                        flag_values=flag_values)
    flags.DEFINE_integer("port", 8500, "gRPC port of the model server (0: pick a free one).", lower_bound=0,
                         flag_values=flag_values)
    flags.DEFINE_list("users", ["1", "42", "405"], "Users whose recommendations are printed.", flag_values=flag_values)
    flags.DEFINE_integer("k", 10, "Recommendations per user.", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_bool("allow_below_baseline", False, "Export the model even when its validation HR@10 or NDCG@10 "
                      "is below a baseline's (a test config's few steps, say).", flag_values=flag_values)


def _source(values):
    data_dir = values.data_dir or os.environ.get(prepared.DATA_DIR_ENV)
    if data_dir:
        if not pathlib.Path(data_dir).is_dir():
            raise app.UsageError(f"--data_dir={data_dir}: no such directory (expected an unpacked MovieLens directory)")
        return f"movielens:{pathlib.Path(data_dir).resolve()}"
    return "tfds:movielens/100k"


def _configs(values, source):
    """The (DataConfig, ModelConfig, TrainConfig) of `--config`, reading `source`."""
    train_values = flags.FlagValues()
    train.define_flags(train_values)
    # A progress bar on a terminal; elsewhere the curve is printed once training ends.
    train_values(["demo", f"--flagfile={values.config}", f"--source={source}", f"--run_dir={values.run_dir}",
                  f"--verbose={int(sys.stdout.isatty())}"])
    return train.configs_from_flags(train_values)


def _stage(name, call):
    """Prints the heading of a stage: its name and the library call that runs it."""
    print(f"\n=== {name}: {call}", flush=True)


def _learning_curve(run_dir, monitor):
    """"val_HR@10 by epoch: 0.121 0.150 ... (best 0.1951 at epoch 16)", from the run's training log."""
    log = run_files.RunDirectory(run_dir).read_training_log()
    curve = [record[monitor] for record in log if record["event"] == "epoch"]
    pick = max if checks.metric_mode(monitor) == "max" else min
    best = pick(range(len(curve)), key=curve.__getitem__)
    return (f"{monitor} by epoch: {' '.join(f'{value:.3f}' for value in curve)} "
            f"(best {curve[best]:.4f} at epoch {best + 1})")


def _beside_baselines(metrics):
    """The model's HR@10 / NDCG@10 beside the baselines' on the same test targets (`metrics["baselines"]`),
    then the verdict on validation (`tfrec.evaluation.verdict`)."""
    figures = {"this model": metrics, **metrics["baselines"]}
    return "HR@10 / NDCG@10 on the same test users: " + ", ".join(
        f"{name} {values['HR@10']:.4f} / {values['NDCG@10']:.4f}" for name, values in figures.items()) + (
        f". {verdict.verdict(metrics) or 'No validation figures of the baselines.'}")


def _because(explanation, row, rank, behaviours, ratings, titles):
    """"because you rated A 5 (+0.21), B 4 (+0.12)": the behaviours that raised the score most."""
    reasons = []
    for position, value in explanation.strongest(row, rank, count=EXPLAINED_BEHAVIOURS):
        rating = f" {ratings[position]:g}" if ratings else ""
        reasons.append(f"{titles.get(behaviours[position], behaviours[position])}{rating} ({value:+.3f})")
    if not reasons:
        return "no behaviour raised its score"
    return ("because you rated " if ratings else "because of ") + ", ".join(reasons)


def _print_recommendations(values, dataset, recommendations, explanation, behaviours, behaviour_ratings):
    """Per user: the explained top recommendations one a line, then the rest on one line."""
    titles = dict(zip(dataset.items["item_id"], dataset.items["title"]))
    histories = dataset.interactions.groupby("user_id")["item_id"].apply(list)
    for row, user in enumerate(values.users):
        recent = ", ".join(titles[item] for item in histories[user][-3:])
        print(f"\nuser {user} ({len(histories[user])} ratings; most recent: {recent})")
        # Titles come with the answer (signature output item_titles): no lookup of our own.
        ranked = list(zip(recommendations.item_ids[row], recommendations.item_titles[row],
                          recommendations.scores[row]))
        ratings = behaviour_ratings[row] if behaviour_ratings else None
        for rank, (item, title, score) in enumerate(ranked[:EXPLAINED_RECOMMENDATIONS], start=1):
            print(f"  {rank:2d}. {title} [item {item}, score {score:.3f}]: "
                  f"{_because(explanation, row, rank - 1, behaviours[row], ratings, titles)}")
        rest = ranked[EXPLAINED_RECOMMENDATIONS:]
        if rest:
            first, last = EXPLAINED_RECOMMENDATIONS + 1, len(ranked)
            print(f"  {first}-{last}. " if last > first else f"  {first:2d}. ",
                  "; ".join(f"{title} [{score:.3f}]" for _, title, score in rest), sep="")
    print(f"\nserved by model version {recommendations.version}")


def run(values: flags.FlagValues) -> None:
    """Runs the whole job as the parsed `values` say."""
    from tfrec import client as serving_client

    started_job = time.perf_counter()
    source = _source(values)
    data_config, model_config, train_config = _configs(values, source)
    _stage("describe", f"tfrec.data.prepare(DataConfig(source={source!r}, ...))")
    data = prepared.prepare(data_config)
    dataset = data.tables
    unknown = [user for user in values.users if user not in set(dataset.interactions["user_id"])]
    if unknown:
        raise app.UsageError(f"--users: unknown user ids {unknown} in {source}")
    print(summary.format_text(summary.describe(dataset, data.split, data.examples)))

    _stage("train", f"tfrec.Trainer(TrainConfig(...)).fit(model, data, run_dir={values.run_dir!r}) ({values.config})")
    trainer = Trainer(train_config)
    result = trainer.fit(trainer.build_model(model_config, data), data, run_dir=values.run_dir)
    print(f"test {format_metrics(result.metrics)}")
    print(_learning_curve(values.run_dir, train_config.monitor_for(model_config)))
    _stage("evaluate", f"tfrec.training.evaluate_run({values.run_dir!r})")
    print(f"test {format_metrics(evaluate_run(values.run_dir))} (recomputed from the run directory)")
    print(_beside_baselines(result.metrics))
    _stage("export", f"tfrec.exporting.export_run({values.run_dir!r}, {values.export_base!r}, {values.model_name!r})")
    exported = exporter.export_run(values.run_dir, values.export_base, values.model_name,
                                   exporter.ExportOptions(allow_below_baseline=values.allow_below_baseline))
    ops = exported.ops
    print(f"op types: {len(ops.core_ops)} core TensorFlow, {len(ops.text_ops)} TensorFlow Text, "
          f"{len(ops.other_ops)} other")
    print(f"size: {exported.size.summary()}")
    print(f"exported {exported.path} (version {exported.version}): signatures {exported.signatures}; model card "
          f"{exported.path}/assets/model_card.md")

    port = values.port or launch.free_ports(1)[0]
    base_path = pathlib.Path(values.export_base, values.model_name).resolve()
    server_args = ["tfrec.serve", f"--model_name={values.model_name}", f"--model_base_path={base_path}", f"--port={port}",
                   f"--verbosity={values.verbosity}"]  # the server logs as this command does
    print(f"\n=== serve: python -m {' '.join(server_args)}", flush=True)
    server = subprocess.Popen([sys.executable, "-m", *server_args])
    try:
        target = f"127.0.0.1:{port}"
        # Each user's whole history, oldest first (interactions are sorted by
        # user and time), with its ratings and times, and the user's id:
        # recommend_in_context (no item of it is recommended); then
        # explain_in_context over the latest history_length behaviours, the
        # window the model was trained on (a whole history of hundreds would
        # be hundreds of shortened histories of that length to score).
        by_user = dataset.interactions.groupby("user_id")
        histories, times = by_user["item_id"].apply(list), by_user["timestamp"].apply(list)
        ratings = by_user["rating"].apply(list) if "rating" in dataset.interactions else None
        requested = [histories[user] for user in values.users]
        context = {
            "timestamps": [[int(t) for t in times[user]] for user in values.users],
            "ratings": None if ratings is None else [[float(r) for r in ratings[user]] for user in values.users],
            "user_ids": list(values.users),
        }
        with serving_client.RecommenderClient(target, values.model_name) as client:
            client.wait_until_available(timeout=300, process=server)
            started = time.perf_counter()
            recommendations = client.recommend(requested, k=values.k, **context)
            elapsed = time.perf_counter() - started
            started = time.perf_counter()
            window = slice(-data_config.history_length, None)
            explained = [history[window] for history in requested]
            explained_context = {
                "timestamps": [row[window] for row in context["timestamps"]],
                "ratings": None if ratings is None else [row[window] for row in context["ratings"]],
                "user_ids": context["user_ids"],
            }
            explanation = client.explain(explained, recommendations.item_ids[:, :EXPLAINED_RECOMMENDATIONS].tolist(),
                                         **explained_context)
        print(f"\n=== query: {len(values.users)} users in {1000 * elapsed:.1f} ms over gRPC; the behaviours behind "
              f"the top {EXPLAINED_RECOMMENDATIONS} among the last {data_config.history_length} (occlusion, signature "
              f"explain_in_context) in "
              f"{1000 * (time.perf_counter() - started):.1f} ms")
        _print_recommendations(values, dataset, recommendations, explanation, explained,
                               explained_context["ratings"])
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"tfrec.demo: done in {time.perf_counter() - started_job:.0f} s: trained {values.run_dir}, exported "
          f"{exported.path}, served {len(values.users)} users' recommendations over gRPC")


def main(argv):
    run(FLAGS)


if __name__ == "__main__":
    config_flags.run(main, config_flags.help_groups("demo flags", config_flags.defined(define_flags)),
                     errors=(ConfigError, DataError, OSError))
