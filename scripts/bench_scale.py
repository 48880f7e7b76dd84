"""Million-item catalogues: export size, load time, recommend latency over gRPC, memory, and the floor.

For each catalogue size (`--sizes`) and storage dtype (`--dtypes`), builds an
untrained tiny model (`ModelConfig(encoder="tiny")`) whose catalogue vectors
are random unit vectors (text projection zeroed, random item-id embeddings:
latency and size do not depend on training), exports it with the real
exporter (`exporter.export_model(..., catalogue_dtype=...)`), starts the
embedded server on it (`python -m tfrec.serve`, a subprocess on loopback) and
measures:

* export size, catalogue matrix bytes, server load time (start to SERVING)
  and server RSS (current and peak);
* recommend p50 / p99 over gRPC at batch 1 (`RecommenderClient.recommend`);
* the floor of the same run: this CPU's matrix-vector rate (multiply-adds/s
  of `[1, d] x [d, C]` float32 in TensorFlow, this process, one product after
  each request) and memory bandwidth (a float32 `reduce_sum` over the
  matrix), and p50 / floor;
* top-k over the catalogue, in-process: the chunked `CatalogueRetrieval.top_k`
  (exclusions applied to each chunk's short list) against scoring every row
  and masking the exclusions with a `[B, C]` scatter_nd;
* Recall@10 of each reduced-precision export against the float32 export's
  answers, on `--recall_queries` histories through the exported `recommend`.

A second table times MiniLM encoding of item texts (MovieLens titles and
genres, or synthetic sentences), batched unsorted (one padded width) against
sorted by length (`TextEncoder.encode_in_batches`), and projects the time for
1M items. Writes the tables to BENCHMARKS.md between `<!-- bench_scale -->`
and `<!-- /bench_scale -->` with the command and machine.

Example:
    nice -n 10 python scripts/bench_scale.py --sizes=10000,100000,1000000
"""

import os
import sys
import tempfile
import time
from types import SimpleNamespace

import benchlib
import numpy as np
from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["10000", "100000", "1000000"], "Catalogue sizes (items).")
flags.DEFINE_integer("embedding_dim", 64, "Embedding dimension of the exported catalogues.")
flags.DEFINE_list("dtypes", ["float32", "bfloat16", "int8"], "Catalogue storage dtypes to export.")
flags.DEFINE_bool("no_prior_rows", True, "Also export each size's float32 catalogue without the transition prior "
                  "(the network alone) and time it beside the same export with it.")
flags.DEFINE_integer("k", 10, "Items per recommendation.")
flags.DEFINE_integer("history_length", 20, "Items in each benchmark history.")
flags.DEFINE_integer("requests", 200, "Timed gRPC requests per export (after 10 warm-up calls).", lower_bound=10)
flags.DEFINE_integer("recall_queries", 200, "Histories for Recall@10 against float32.", lower_bound=1)
flags.DEFINE_integer("floor_repeats", 30, "Timed calls of the bandwidth read and of each top-k.", lower_bound=3)
flags.DEFINE_integer("encode_texts", 512, "Item texts encoded with MiniLM per measurement (0 = skip).")
flags.DEFINE_integer("encode_batch", 64, "MiniLM encoding batch size.")
flags.DEFINE_integer("encode_length", 64, "MiniLM sequence length (texts are cut there).")
flags.DEFINE_string("data_dir", os.path.join(os.path.dirname(REPO), "shared", "data", "ml-100k"),
                    "MovieLens-100K directory for the encoding texts (synthetic texts when absent).")
flags.DEFINE_string("output", os.path.join(REPO, "BENCHMARKS.md"), "Markdown file to update ('' = print only).")

MB = 1e6


def median_seconds(call, repeats):
    """Median wall time of `repeats` calls of `call` after two warm-up calls."""
    call()
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def random_model(num_items, dim, seed=0, prior=True):
    """An untrained tiny retrieval model over `num_items` whose catalogue vectors are random unit vectors;
    with `prior`, its transition prior holds random counts (4 successors per item) at weight 1."""
    from tfrec import data
    from tfrec.models import ModelConfig, build_model

    ids = [f"i{n}" for n in range(1, num_items + 1)]
    texts = [""] + ids
    vocab = data.Vocabulary(ids, ["u1"], ["view"])
    config = ModelConfig(task="retrieval", encoder="tiny", sequence_length=8, embedding_dim=dim, history_layers=1,
                         transition_prior="auto" if prior else "off")
    # The frozen encoder's catalogue pass is skipped (its text vectors stay 0):
    # item vector = l2_normalize(text projection + id embedding), the text part
    # is zeroed, the ids drawn, and `refresh_catalogue` makes random unit vectors.
    model = build_model(config, SimpleNamespace(vocab=vocab, item_texts=texts, item_titles=texts, rating_mean=0.0),
                        encode_catalogue=False)
    tower = model.item_tower
    tower.text_projection.kernel.assign(np.zeros(tower.text_projection.kernel.shape, np.float32))
    tower.text_projection.bias.assign(np.zeros(tower.text_projection.bias.shape, np.float32))
    rng = np.random.default_rng(seed)
    tower.id_embedding.embeddings.assign(rng.standard_normal((num_items + 1, dim)).astype(np.float32))
    model.refresh_catalogue()
    if prior:
        sources = np.repeat(np.arange(1, num_items + 1), 4)
        model.transition_prior.fit(sources, rng.integers(1, num_items + 1, len(sources)),
                                   rng.integers(1, 20, len(sources)).astype(np.float32))
        model.transition_prior.weight.assign(1.0)
    return model


def floor_calls(matrix):
    """(the [1, d] x [d, C] float32 product, a float32 reduce_sum reading `matrix`), traced, each returning numpy."""
    import tensorflow as tf

    rows = tf.constant(matrix)
    query = tf.constant(matrix[1:2] + 0.01)
    product = tf.function(lambda: tf.matmul(query, rows, transpose_b=True))
    read = tf.function(lambda: tf.reduce_sum(rows))
    return lambda: product().numpy(), lambda: read().numpy()


def plain_top_k(retrieval, queries, k, exclude):
    """Top-k by scoring every row and masking padding and `exclude` in the `[B, C]` matrix (one top_k)."""
    import tensorflow as tf

    scores = tf.matmul(queries, retrieval.candidate_embeddings, transpose_b=True)
    rows = tf.repeat(tf.range(tf.shape(exclude)[0]), tf.shape(exclude)[1])
    hits = tf.scatter_nd(tf.stack([rows, tf.reshape(exclude, [-1])], axis=1),
                         tf.ones([tf.size(exclude)], tf.int32), tf.shape(scores))
    banned = tf.logical_or(hits > 0, tf.range(tf.shape(scores)[1])[None, :] == 0)
    return tf.math.top_k(tf.where(banned, float("-inf"), scores), k=k)


def top_k_times(matrix, k, history_length, repeats):
    """In-process ms of (chunked `CatalogueRetrieval.top_k`, plain top-k) for one query; asserts equal answers."""
    import tensorflow as tf

    from tfrec.models.catalogue_retrieval import CatalogueRetrieval

    retrieval = CatalogueRetrieval(matrix)
    rng = np.random.default_rng(1)
    query = tf.constant(matrix[1:2] + 0.01)
    exclude = tf.constant(rng.integers(1, matrix.shape[0], (1, history_length)), tf.int32)
    chunked = tf.function(lambda: retrieval.top_k(query, k, exclude))
    plain = tf.function(lambda: plain_top_k(retrieval, query, k, exclude))
    np.testing.assert_array_equal(chunked()[1].numpy(), plain()[1].numpy())
    return (1e3 * median_seconds(lambda: chunked()[1].numpy(), repeats),
            1e3 * median_seconds(lambda: plain()[1].numpy(), repeats))


def rss_mb(pid):
    """(current, peak) resident memory of process `pid` in MB."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            fields[name] = value.split()
    return int(fields["VmRSS"][0]) / 1e3, int(fields["VmHWM"][0]) / 1e3


def served_latency(export_base, model_name, histories, workdir, floor_call):
    """Starts the embedded server on `export_base` and times requests, each followed by one `floor_call`
    (so both see the same load on the shared cores): (load s, p50 ms, p99 ms, floor p50 ms, RSS MB, peak MB)."""
    import serving_fixtures as sf

    from tfrec.client import RecommenderClient

    start = time.perf_counter()
    server = sf.ServerProcess([f"--model_name={model_name}", f"--model_base_path={export_base}",
                               "--file_system_poll_wait_seconds=0"], sf.free_port(),
                              os.path.join(workdir, f"server-{model_name}.log"))
    try:
        server.wait_serving(timeout=1800)
        load = time.perf_counter() - start
        latencies, floors = [], []
        with RecommenderClient(server.target, model_name, timeout=120) as client:
            for n in range(10 + FLAGS.requests):
                history = [histories[n % len(histories)]]
                begin = time.perf_counter()
                client.recommend(history, k=FLAGS.k)
                middle = time.perf_counter()
                floor_call()
                if n >= 10:
                    latencies.append(middle - begin)
                    floors.append(time.perf_counter() - middle)
        rss, peak = rss_mb(server.process.pid)
    finally:
        server.stop()
    ms = 1e3 * np.asarray(latencies)
    return load, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), 1e3 * float(np.median(floors)), rss, peak


def exported_answers(path, histories, k):
    """Item ids the export at `path` recommends for `histories` (in-process `recommend`, batches of 50)."""
    import tensorflow as tf

    from tfrec.exporting import exporter

    recommend = exporter.load(path).signatures["recommend"]
    batches = [histories[start:start + 50] for start in range(0, len(histories), 50)]
    answers = [recommend(history=tf.constant(batch), k=tf.fill([len(batch)], k))["item_ids"].numpy()
               for batch in batches]
    return np.concatenate(answers, axis=0)


def recall_at_k(answers, reference):
    """Mean over rows of |answers ∩ reference| / k."""
    return float(np.mean([len(set(a) & set(r)) / len(r) for a, r in zip(answers, reference)]))


def scale_rows(workdir):
    """One dict per (size, dtype): the measurements of the scale table."""
    from tfrec.exporting import exporter

    rows = []
    rng = np.random.default_rng(2)
    for size in map(int, FLAGS.sizes):
        model = random_model(size, FLAGS.embedding_dim)
        histories = [[f"i{n}" for n in rng.integers(1, size + 1, FLAGS.history_length)]
                     for _ in range(max(FLAGS.recall_queries, 50))]
        matrix = exporter.catalogue_embeddings(model, size)
        matrix = np.concatenate([np.zeros_like(matrix[:1]), matrix])
        product, read = floor_calls(matrix)
        bytes_per_second = matrix.nbytes / median_seconds(read, FLAGS.floor_repeats)
        chunked_ms, plain_ms = top_k_times(matrix, FLAGS.k, FLAGS.history_length, FLAGS.floor_repeats)
        reference = None
        for dtype in FLAGS.dtypes:
            name = f"c{size}-{dtype}"
            start = time.perf_counter()
            result = exporter.export_model(model, workdir, name, catalogue_dtype=dtype, max_size_ratio=1e9)
            export_seconds = time.perf_counter() - start
            answers = exported_answers(result.path, histories[:FLAGS.recall_queries], FLAGS.k)
            reference = answers if dtype == "float32" else reference
            load, p50, p99, floor_ms, rss, peak = served_latency(os.path.join(workdir, name), name, histories,
                                                                 workdir, product)
            rows.append({
                "size": size, "dtype": dtype, "export_mb": result.size.total_bytes / MB,
                "matrix_mb": result.size.catalogue_matrix_bytes / MB, "export_s": export_seconds, "load_s": load,
                "p50": p50, "p99": p99, "floor_ms": floor_ms,
                "bytes_ms": 1e3 * result.size.catalogue_matrix_bytes / bytes_per_second,
                "gmacs": size * FLAGS.embedding_dim / floor_ms / 1e6, "gbps": bytes_per_second / 1e9, "rss": rss, "peak": peak,
                "chunked_ms": chunked_ms, "plain_ms": plain_ms,
                "recall": None if reference is None else recall_at_k(answers, reference),
            })
            print(rows[-1], flush=True)
        if FLAGS.no_prior_rows:
            rows.append(no_prior_row(size, workdir, histories, product))
            print(rows[-1], flush=True)
        del model, matrix
    return rows


def no_prior_row(size, workdir, histories, floor_call):
    """The float32 row of a `size`-item model without a transition prior (same catalogue vectors)."""
    from tfrec.exporting import exporter

    model = random_model(size, FLAGS.embedding_dim, prior=False)
    name = f"c{size}-noprior"
    result = exporter.export_model(model, workdir, name, max_size_ratio=1e9)
    load, p50, p99, floor_ms, rss, peak = served_latency(os.path.join(workdir, name), name, histories, workdir,
                                                         floor_call)
    return {"size": size, "dtype": "float32, no prior", "export_mb": result.size.total_bytes / MB,
            "matrix_mb": result.size.catalogue_matrix_bytes / MB, "export_s": float("nan"), "load_s": load,
            "p50": p50, "p99": p99, "floor_ms": floor_ms, "bytes_ms": float("nan"),
            "gmacs": size * FLAGS.embedding_dim / floor_ms / 1e6, "gbps": float("nan"), "rss": rss, "peak": peak,
            "chunked_ms": float("nan"), "plain_ms": float("nan"), "recall": None}


def encoding_texts(count):
    """`count` item texts: MovieLens-100K's (repeated) if `--data_dir` holds it, else synthetic sentences."""
    if os.path.isdir(FLAGS.data_dir):
        from tfrec import data

        texts = data.prepare(data.DataConfig(source=f"movielens:{FLAGS.data_dir}")).item_texts[1:]
    else:
        rng = np.random.default_rng(3)
        words = "space crime comedy love paris war drama robot story family night city".split()
        texts = [" ".join(rng.choice(words, rng.integers(3, 60))) for _ in range(count)]
    return [texts[n % len(texts)] for n in range(count)]


def encoding_rows():
    """(name, items/s) of MiniLM over `--encode_texts` texts, unsorted and sorted by length."""
    from tfrec.text_encoder import TextEncoder

    encoder = TextEncoder.from_source("minilm", sequence_length=FLAGS.encode_length)
    texts = encoding_texts(FLAGS.encode_texts)
    encoder.encode_in_batches(texts[:FLAGS.encode_batch], FLAGS.encode_batch)  # builds and warms up
    rows = []
    for name, sort in (("unsorted, padded to the longest text", False), ("sorted by length, each batch trimmed", True)):
        start = time.perf_counter()
        vectors = encoder.encode_in_batches(texts, FLAGS.encode_batch, sort_by_length=sort)
        rows.append((name, len(texts) / (time.perf_counter() - start), vectors))
    np.testing.assert_allclose(rows[0][2], rows[1][2], atol=1e-4)
    return [(name, rate) for name, rate, _ in rows]


def scale_table(rows):
    """Markdown lines of the scale table of `scale_rows` and the verdict on the largest catalogue."""
    lines = [
        f"Command: `{' '.join(['python', 'scripts/bench_scale.py', *sys.argv[1:]])}`  ",
        f"Machine: {benchlib.machine()}  ",
        f"Catalogues: random unit vectors, dim {FLAGS.embedding_dim}, in an untrained tiny model "
        "(with a transition prior of random counts, 4 successors per item, weight 1: trained models have one; "
        "the \"no prior\" rows are the same vectors without it) exported by "
        f"`exporter.export_model`; served by the embedded `tfrec.serve` on loopback gRPC, batch 1, history of "
        f"{FLAGS.history_length} items, k={FLAGS.k}, {FLAGS.requests} requests. Floor = C x d multiply-adds at "
        "the matrix-vector rate measured in this run ([1, d] x [d, C] float32 MatMul in TensorFlow, in the "
        "client process, one call after each request so that both see the same load); bytes = "
        "the stored matrix read at the bandwidth of a float32 reduce_sum over it. Recall@10 = overlap of the "
        f"export's top 10 with the float32 export's, {FLAGS.recall_queries} histories.",
        "",
        "| items | dtype | export MB | matrix MB | export s | load s | server RSS MB (peak) | p50 ms | p99 ms "
        "| floor ms (GMAC/s) | bytes ms (GB/s) | p50 / floor | top-k chunked / plain ms | Recall@10 vs float32 |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        recall = "-" if r["recall"] is None or r["dtype"] == "float32" else f"{r['recall']:.4f}"
        lines.append(
            f"| {r['size']:,} | {r['dtype']} | {r['export_mb']:.1f} | {r['matrix_mb']:.1f} | {r['export_s']:.1f} "
            f"| {r['load_s']:.1f} | {r['rss']:.0f} ({r['peak']:.0f}) | {r['p50']:.2f} | {r['p99']:.2f} "
            f"| {r['floor_ms']:.2f} ({r['gmacs']:.2f}) | {r['bytes_ms']:.2f} ({r['gbps']:.1f}) "
            f"| {r['p50'] / r['floor_ms']:.2f} | {r['chunked_ms']:.2f} / {r['plain_ms']:.2f} | {recall} |"
            .replace("nan", "-"))  # the "no prior" rows measure the latency alone
    largest = max(r["size"] for r in rows)
    verdict = []
    alone = {r["size"]: r["p50"] for r in rows if r["dtype"] == "float32, no prior"}
    for r in rows:
        if r["dtype"] == "float32" and r["size"] in alone:
            ratio = r["p50"] / alone[r["size"]]
            verdict.append(f"- {r['size']:,} items: p50 with the transition prior / without = {ratio:.2f} "
                           f"(goal <= 1.2: {'met' if ratio <= 1.2 else 'NOT met'}).")
        if r["size"] == largest and r["dtype"] == "float32":
            verdict.append(f"- {largest:,} items, float32: p50 / floor = {r['p50'] / r['floor_ms']:.2f} (goal <= 3: "
                           f"{'met' if r['p50'] <= 3 * r['floor_ms'] else 'NOT met'}).")
        elif r["size"] == largest and r["recall"] is not None:
            verdict.append(f"- {largest:,} items, {r['dtype']}: Recall@10 vs float32 {r['recall']:.4f} (goal >= 0.99: "
                           f"{'met' if r['recall'] >= 0.99 else 'NOT met'}), p50 {r['p50']:.1f} ms.")
    return lines + ["", *verdict]


def main(argv):
    del argv
    workdir = tempfile.mkdtemp(prefix="bench_scale-")
    lines = scale_table(scale_rows(workdir))
    if FLAGS.encode_texts:
        encoding = encoding_rows()
        lines += [
            "",
            f"MiniLM item-text encoding ({FLAGS.encode_texts} texts, batch {FLAGS.encode_batch}, sequence length "
            f"{FLAGS.encode_length}, `TextEncoder.encode_in_batches`):",
            "",
            "| batching | items/s | 1M items would take |",
            "|---|---:|---:|",
            *[f"| {name} | {rate:.0f} | {1e6 / rate / 3600:.1f} h |" for name, rate in encoding],
        ]
    text = "\n".join(lines)
    print(text)
    if FLAGS.output:
        benchlib.write_section(FLAGS.output, "bench_scale",
                               "## Million-item catalogues (`scripts/bench_scale.py`)\n\n" + text)
        print(f"\nwrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
