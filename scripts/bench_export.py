"""Export benchmark: size on disk against the weights, export time, serving latency.

For each encoder and task, builds the model on the MovieLens-100K catalogue
(untrained: sizes and latencies do not depend on training), exports it with
`tfrec.exporting.exporter.export_model`, reloads it as a server would and times the
signatures (batch of one, median of `--repeats` calls). A last row exports the
text encoder alone with `keras.export.ExportArchive`, the naive way, to show
what tracking each weight twice costs.

    nice -n 10 python scripts/bench_export.py --encoders=tiny,minilm

Prints a markdown table.
"""

import os
import pathlib
import statistics
import tempfile
import time

from absl import app, flags

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfrec import data  # noqa: E402
from tfrec.exporting import exporter  # noqa: E402
from tfrec.exporting import checks  # noqa: E402
from tfrec.models import ModelConfig, build_model  # noqa: E402
from tfrec.text_encoder import TextEncoder  # noqa: E402

_DEFAULT_DATA = os.environ.get(
    "TFREC_DATA_DIR", str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k")
)
flags.DEFINE_string("data_dir", _DEFAULT_DATA, "MovieLens-100K directory (catalogue and texts).")
flags.DEFINE_list("encoders", ["tiny", "minilm"], "Encoders to export (ModelConfig.encoder values).")
flags.DEFINE_list("tasks", ["retrieval", "ranking"], "Tasks to export.")
flags.DEFINE_integer("sequence_length", 32, "Encoder sequence length.")
flags.DEFINE_integer("repeats", 30, "Timed calls per signature.")
FLAGS = flags.FLAGS


def _median_ms(fn, **inputs):
    fn(**inputs)  # first call initialises tables and kernels
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        fn(**inputs)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _latencies(loaded, ids, text):
    history = tf.constant([ids[1:21]])
    signatures = loaded.signatures
    if "recommend" in signatures:
        return {
            "recommend": _median_ms(signatures["recommend"], history=history, k=tf.constant([10])),
            "recommend_from_text": _median_ms(
                signatures["recommend_from_text"], text=tf.constant([text]), k=tf.constant([10])),
        }
    return {"score": _median_ms(signatures["score"], history=history, candidates=tf.constant([ids[21:121]]))}


def _naive_encoder_export(encoder_name, directory):
    """The text encoder exported with keras ExportArchive: (weights bytes, export bytes)."""
    encoder = TextEncoder.from_source(encoder_name, sequence_length=FLAGS.sequence_length)
    encoder(tf.constant(["warm up"]))
    archive = keras.export.ExportArchive()
    archive.track(encoder)
    archive.add_endpoint("serve", encoder, input_signature=[tf.TensorSpec([None], tf.string)])
    archive.write_out(directory, verbose=False)
    return checks.weights_bytes(encoder.weights), checks.directory_bytes(directory)


def main(argv):
    del argv
    prepared = data.prepare(data.DataConfig(source=f"movielens:{FLAGS.data_dir}"))
    vocab, texts = prepared.vocab, prepared.item_texts
    rows = []
    with tempfile.TemporaryDirectory() as base:
        for encoder in FLAGS.encoders:
            for task in FLAGS.tasks:
                config = ModelConfig(task=task, encoder=encoder, sequence_length=FLAGS.sequence_length)
                model = build_model(config, prepared)
                start = time.perf_counter()
                result = exporter.export_model(model, base, f"{encoder}-{task}")
                seconds = time.perf_counter() - start
                latency = _latencies(exporter.load(result.path), vocab.item_ids, texts[1])
                size = result.size
                rows.append((f"{encoder} {task}", size.weights_bytes, size.total_bytes, size.graph_bytes,
                             f"{size.ratio:.3f}", f"{size.state_ratio:.3f}", f"{seconds:.1f}",
                             ", ".join(f"{name} {ms:.1f}" for name, ms in latency.items()),
                             len(result.ops.core_ops), len(result.ops.text_ops), len(result.ops.other_ops)))
            weights, total = _naive_encoder_export(encoder, os.path.join(base, f"naive-{encoder}"))
            rows.append((f"{encoder} encoder alone, keras ExportArchive", weights, total, None,
                         f"{total / weights:.3f}", "", "", "", "", "", ""))
    print(f"catalogue: {vocab.num_items} items; sequence length {FLAGS.sequence_length}; "
          f"latency = median of {FLAGS.repeats} calls, batch 1, ms\n")
    print("| export | weights MB | export MB | saved_model.pb MB | ratio | state ratio | export s "
          "| latency ms | core ops | TF Text ops | other ops |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, weights, total, graph, *rest in rows:
        graph_mb = "" if graph is None else f"{graph / 1e6:.2f}"
        cells = [name, f"{weights / 1e6:.2f}", f"{total / 1e6:.2f}", graph_mb, *map(str, rest)]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    app.run(main)
