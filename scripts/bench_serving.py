"""Latency and throughput of `recommend` through the gRPC server vs in-process.

Measures, at batch 1 (one history per request):
  * the SavedModel's `serving_default` called in-process (the floor);
  * the embedded server (`python -m tfrec.serve`, a subprocess on loopback) with
    1 client, 16 concurrent clients each with its own channel, 16 concurrent
    clients sharing one `BatchingClient` (requests merged into one Predict), and
    16 plain clients against a server started with `--enable_batching`;
prints p50/p99 latency and QPS, and writes the table to BENCHMARKS.md between
`<!-- bench_serving -->` and `<!-- /bench_serving -->` with the command and machine.

Without --export_base it builds a tiny SavedModel (40 items) in a temp dir; point
it at a real export with e.g. `--export_base=exports/retrieval --history=50,172,133`.

Example:
    nice -n 10 python scripts/bench_serving.py --requests=2000
"""

import os
import sys
import tempfile
import threading
import time

import numpy as np
import benchlib
from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "export_base", None, "Model base path holding numbered SavedModel versions; default: build a tiny model."
)
flags.DEFINE_string("model_name", "retrieval", "Model name to serve the export under.")
flags.DEFINE_list(
    "history", None, "Item ids of the benchmark query history (default: ids of the tiny model's catalogue)."
)
flags.DEFINE_integer("k", 10, "Items per recommendation.")
flags.DEFINE_integer(
    "requests", 2000, "Requests per single-client measurement (after 50 warm-up calls).", lower_bound=10
)
flags.DEFINE_integer("clients", 16, "Concurrent clients.", lower_bound=2)
flags.DEFINE_integer("requests_per_client", 200, "Requests each concurrent client sends.", lower_bound=10)
flags.DEFINE_integer("server_max_workers", 16, "--max_workers of the server.")
flags.DEFINE_integer("batch_size", 16, "BatchingClient max_batch_size.")
flags.DEFINE_float("batch_delay_ms", 2.0, "BatchingClient max_delay_ms.")
flags.DEFINE_string(
    "batching_parameters_file",
    os.path.join(REPO, "serving", "batching.config"),
    "BatchingParameters of the server-side batching measurement.",
)
flags.DEFINE_string("output", os.path.join(REPO, "BENCHMARKS.md"), "Markdown file to update ('' = print only).")



def summarize(name, latencies, wall):
    lat = np.asarray(latencies) * 1000.0
    return {
        "name": name,
        "n": len(lat),
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
        "qps": len(lat) / wall,
    }


def timed_loop(call, n):
    latencies = []
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - t)
    return latencies, time.perf_counter() - start


def concurrent_loop(make_call, clients, n_each):
    """Runs `clients` threads, each calling its own `make_call()` n_each times."""
    calls = [make_call() for _ in range(clients)]
    for call in calls:
        call()  # connect + warm
    latencies, barrier = [[] for _ in range(clients)], threading.Barrier(clients + 1)

    def worker(i):
        barrier.wait()
        for _ in range(n_each):
            t = time.perf_counter()
            calls[i]()
            latencies[i].append(time.perf_counter() - t)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return [x for per in latencies for x in per], time.perf_counter() - start


def main(argv):
    del argv
    import serving_fixtures as sf
    import tensorflow as tf
    import tensorflow_text  # noqa: F401 - registers the TF Text ops exported tokenisers use
    from tfrec.client import RecommenderClient
    from tfrec.server.model_manager import versions_on_disk

    workdir = tempfile.mkdtemp(prefix="bench_serving-")
    if FLAGS.export_base:
        base, model_name = os.path.abspath(FLAGS.export_base), FLAGS.model_name
        history = FLAGS.history or sys.exit("--history (item ids known to the export) is needed with --export_base")
    else:
        base, model_name = os.path.join(workdir, "tiny"), "tiny"
        sf.save_version(base, 1, model_name=model_name)
        history = FLAGS.history or ["item3", "item17", "item25", "item8", "item30"]
    versions = versions_on_disk(base)
    if not versions:
        sys.exit(f"no SavedModel version directory under {base}")
    k = FLAGS.k

    loaded = tf.saved_model.load(os.path.join(base, str(versions[-1])))
    recommend = loaded.signatures["serving_default"]
    rows = [list(history)]

    def in_process():
        out = recommend(history=tf.constant(rows), k=tf.constant([k] * len(rows), tf.int32))
        return out["item_ids"].numpy(), out["scores"].numpy()

    timed_loop(in_process, 50)
    results = [summarize("in-process SavedModel call", *timed_loop(in_process, FLAGS.requests))]

    def start_server(extra_flags):
        server = sf.ServerProcess(
            [
                f"--model_name={model_name}",
                f"--model_base_path={base}",
                "--file_system_poll_wait_seconds=0",
                f"--max_workers={FLAGS.server_max_workers}",
                *extra_flags,
            ],
            sf.free_port(),
            os.path.join(workdir, f"server-{len(extra_flags)}.log"),
        )
        server.wait_serving()
        return server

    def concurrent_plain(server, name):
        clients = []

        def own_client():
            c = RecommenderClient(server.target, model_name)
            clients.append(c)
            return lambda: c.recommend(rows, k=k)

        try:
            return summarize(name, *concurrent_loop(own_client, FLAGS.clients, FLAGS.requests_per_client))
        finally:
            for c in clients:
                c.close()

    server = start_server([])
    try:
        with RecommenderClient(server.target, model_name) as client:
            got = client.recommend(rows, k=k)
            want_ids, want_scores = in_process()
            assert got.item_ids.tolist() == [[b.decode() for b in r] for r in want_ids], "server != in-process"
            np.testing.assert_allclose(got.scores, want_scores, rtol=1e-5)
            single = lambda: client.recommend(rows, k=k)  # noqa: E731
            timed_loop(single, 50)
            results.append(summarize("server, 1 client", *timed_loop(single, FLAGS.requests)))
        results.append(concurrent_plain(server, f"server, {FLAGS.clients} clients (own channel each)"))
        with RecommenderClient(server.target, model_name) as client, client.batching(
            max_batch_size=FLAGS.batch_size, max_delay_ms=FLAGS.batch_delay_ms
        ) as batched:
            lat, wall = concurrent_loop(
                lambda: (lambda: batched.recommend(rows, k=k)), FLAGS.clients, FLAGS.requests_per_client
            )
            results.append(
                summarize(
                    f"server, {FLAGS.clients} clients sharing a BatchingClient "
                    f"(max_batch_size {FLAGS.batch_size}, {FLAGS.batch_delay_ms:g} ms)",
                    lat,
                    wall,
                )
            )
            mean_batch = (FLAGS.clients * (FLAGS.requests_per_client + 1)) / batched.batches_sent
    finally:
        server.stop()
    server = start_server(["--enable_batching", f"--batching_parameters_file={FLAGS.batching_parameters_file}"])
    try:
        results.append(
            concurrent_plain(
                server,
                f"server with --enable_batching ({os.path.relpath(FLAGS.batching_parameters_file, REPO)}), "
                f"{FLAGS.clients} clients (own channel each)",
            )
        )
    finally:
        server.stop()

    floor, one, plain, merged, server_batched = results
    lines = [
        f"Command: `{' '.join(['python', 'scripts/bench_serving.py', *sys.argv[1:]])}`  ",
        f"Machine: {benchlib.machine()}  ",
        f"Model: {f'`{base}` version {versions[-1]}' if FLAGS.export_base else 'tiny test model (40 items, dim 8)'}"
        f" served as `{model_name}`, history of {len(history)} items, k={k}, "
        f"batch 1 per request; server: embedded `tfrec.serve`, --max_workers={FLAGS.server_max_workers}, "
        "loopback gRPC.",
        "",
        "| measurement | requests | p50 ms | p99 ms | QPS |",
        "|---|---:|---:|---:|---:|",
        *[f"| {r['name']} | {r['n']} | {r['p50']:.3f} | {r['p99']:.3f} | {r['qps']:.0f} |" for r in results],
        "",
        f"- server p50 - in-process p50: {one['p50'] - floor['p50']:.3f} ms (goal <= 1 ms: "
        f"{'met' if one['p50'] - floor['p50'] <= 1 else 'NOT met'}).",
        f"- {FLAGS.clients} clients / 1 client QPS: plain {plain['qps'] / one['qps']:.2f}x, BatchingClient "
        f"{merged['qps'] / one['qps']:.2f}x, server-side batching {server_batched['qps'] / one['qps']:.2f}x "
        f"(goal >= 3x); the BatchingClient sent {mean_batch:.1f} requests per Predict on average.",
    ]
    text = "\n".join(lines)
    print(text)
    if FLAGS.output:
        benchlib.write_section(FLAGS.output, "bench_serving", "## Serving latency and throughput (`scripts/bench_serving.py`)\n\n" + text)
        print(f"\nwrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
