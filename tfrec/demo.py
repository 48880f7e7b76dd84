"""`python -m tfrec.demo`: the main job end to end, on MovieLens-100K.

Describes the data, trains the demo config, evaluates it, exports it in TF
Serving's layout, starts a model server (TF Serving when its binary is on PATH,
else the embedded one), and prints through the client library the top-10
recommendations, with titles, for three users and the version that served
them. Each stage runs as its own process, exactly as a user would run it:

    python -m tfrec.demo --data_dir=../shared/data/ml-100k

Without `--data_dir` (or `TFREC_DATA_DIR`) the data comes through
tensorflow-datasets, which needs a machine that reaches the internet.
"""

import os
import pathlib
import subprocess
import sys
import time

from absl import app, flags

from tfrec import data
from tfrec.data import flags as data_flags
from tfrec.training import run_dir  # noqa: F401 (defines --run_dir)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

flags.DEFINE_string("data_dir", None, "MovieLens directory (100K, 1M or latest-small). Default: $TFREC_DATA_DIR.")
flags.DEFINE_string("config", str(REPO_ROOT / "configs" / "demo.flags"), "Flagfile of the model to train.")
flags.DEFINE_string("export_base", "exports", "Base directory of exported models, in TF Serving's layout.")
flags.DEFINE_string("model_name", "tfrec_demo", "Name the model is exported and served under.")
flags.DEFINE_integer("port", 8500, "gRPC port of the model server (0: pick a free one).", lower_bound=0)
flags.DEFINE_list("users", ["1", "42", "405"], "Users whose recommendations are printed.")
flags.DEFINE_integer("k", 10, "Recommendations per user.", lower_bound=1)

FLAGS = flags.FLAGS
FLAGS.set_default("run_dir", "runs/demo")


def _source():
    data_dir = FLAGS.data_dir or os.environ.get(data_flags.DATA_DIR_ENV)
    if data_dir:
        if not pathlib.Path(data_dir).is_dir():
            raise app.UsageError(f"--data_dir={data_dir}: no such directory (expected an unpacked MovieLens directory)")
        return f"movielens:{pathlib.Path(data_dir).resolve()}"
    return "tfds:movielens/100k"


def _run(stage, *args):
    """Runs `python -m <args>` as a stage of the job; stops the job if it fails."""
    print(f"\n=== {stage}: python -m {' '.join(args)}", flush=True)
    result = subprocess.run([sys.executable, "-m", *args], cwd=os.getcwd())
    if result.returncode != 0:
        raise SystemExit(f"demo: stage '{stage}' failed with exit status {result.returncode}")


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _print_recommendations(dataset, recommendations):
    titles = dict(zip(dataset.items["item_id"], dataset.items["title"]))
    histories = dataset.interactions.groupby("user_id")["item_id"].apply(list)
    for row, user in enumerate(FLAGS.users):
        recent = ", ".join(titles[item] for item in histories[user][-3:])
        print(f"\nuser {user} ({len(histories[user])} ratings; most recent: {recent})")
        for rank, (item, score) in enumerate(recommendations.to_lists()[row], start=1):
            print(f"  {rank:2d}. {titles.get(item, item)}  [item {item}, score {score:.3f}]")
    print(f"\nserved by model version {recommendations.version}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from tfrec.serving import client as serving_client

    source = _source()
    dataset = data.load(source)
    unknown = [user for user in FLAGS.users if user not in set(dataset.interactions["user_id"])]
    if unknown:
        raise app.UsageError(f"--users: unknown user ids {unknown} in {source}")

    _run("describe", "tfrec.data", "describe", f"--source={source}", "--split=leave_last_out")
    _run("train", "tfrec.train", f"--flagfile={FLAGS.config}", f"--source={source}", f"--run_dir={FLAGS.run_dir}")
    _run("evaluate", "tfrec.evaluate", f"--run_dir={FLAGS.run_dir}")
    _run(
        "export",
        "tfrec.export",
        f"--run_dir={FLAGS.run_dir}",
        f"--export_base={FLAGS.export_base}",
        f"--model_name={FLAGS.model_name}",
    )

    port = FLAGS.port or _free_port()
    base_path = pathlib.Path(FLAGS.export_base, FLAGS.model_name).resolve()
    server_args = ["tfrec.serve", f"--model_name={FLAGS.model_name}", f"--model_base_path={base_path}", f"--port={port}"]
    print(f"\n=== serve: python -m {' '.join(server_args)}", flush=True)
    server = subprocess.Popen([sys.executable, "-m", *server_args])
    try:
        target = f"127.0.0.1:{port}"
        # Each user's whole history, oldest first (interactions are sorted by
        # user and time), with its ratings and times, and the user's id:
        # recommend_in_context.
        by_user = dataset.interactions.groupby("user_id")
        histories, times = by_user["item_id"].apply(list), by_user["timestamp"].apply(list)
        ratings = by_user["rating"].apply(list) if "rating" in dataset.interactions else None
        context = {
            "timestamps": [[int(t) for t in times[user]] for user in FLAGS.users],
            "ratings": None if ratings is None else [[float(r) for r in ratings[user]] for user in FLAGS.users],
            "user_ids": list(FLAGS.users),
        }
        with serving_client.RecommenderClient(target, FLAGS.model_name) as client:
            client.wait_until_available(timeout=300, process=server)
            started = time.perf_counter()
            recommendations = client.recommend([histories[user] for user in FLAGS.users], k=FLAGS.k, **context)
        print(f"\n=== query: {len(FLAGS.users)} users in {1000 * (time.perf_counter() - started):.1f} ms over gRPC")
        _print_recommendations(dataset, recommendations)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    app.run(main)
