"""Peak memory of the embedded server answering one long history.

Exports a small retrieval model (tiny BERT, two transformer blocks of 64
dimensions, 2,000 items), serves it with `python -m tfrec.serve
--server=embedded` and sends `recommend` requests of one history of N item
ids, N growing; after each it reads the server's peak resident memory
(`VmHWM` of /proc/PID/status, the peak since start: N grows, so each figure
is the peak of the longest history so far); then `explain` requests of one
history of each `--explain_lengths` ids and one candidate. Run it against
another checkout by putting that checkout first on PYTHONPATH. Writes the
table to BENCHMARKS.md (section `bench_long_history`, `--output=` to only
print it) with the command, the machine and whether the peak stayed within
`--budget_mb` of the idle server.

Example:
    nice python scripts/bench_long_history.py --lengths=1000,4000,8000,12000 --explain_lengths=100,256,600
"""

import os
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

import tfrec  # noqa: E402
from tfrec import data  # noqa: E402
from tfrec.client import RecommenderClient  # noqa: E402
from tfrec.exporting import exporter  # noqa: E402
from tfrec.models import ModelConfig, build_model  # noqa: E402
from tfrec.serving_errors import ServingError  # noqa: E402

_LENGTHS = flags.DEFINE_string("lengths", "1000,4000,8000,12000", "History lengths to send, in increasing order.")
_EXPLAIN_LENGTHS = flags.DEFINE_string("explain_lengths", "", "History lengths to explain, in increasing order.")
_OUTPUT = flags.DEFINE_string("output", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                     "BENCHMARKS.md"), "Markdown file to update ('' = print only).")
_BUDGET_MB = flags.DEFINE_integer("budget_mb", 1024, "Peak memory a request may add to the idle server's.")
NUM_ITEMS = 2000


def _export(base):
    vocab = data.Vocabulary([f"i{i}" for i in range(1, NUM_ITEMS + 1)], ["u1"], ["view"])
    texts = [""] + [f"item {i} text" for i in range(1, NUM_ITEMS + 1)]
    config = ModelConfig(task="retrieval", encoder="tiny", sequence_length=8, embedding_dim=64, history_layers=2)
    model = build_model(config, SimpleNamespace(vocab=vocab, item_texts=texts, item_titles=texts, rating_mean=3.0))
    return exporter.export_model(model, base, "long").path


def _peak_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024


def main(argv):
    del argv
    root = os.path.dirname(os.path.dirname(os.path.abspath(tfrec.__file__)))
    with tempfile.TemporaryDirectory() as base:
        _export(base)
        port = 8500 + os.getpid() % 1000
        server = subprocess.Popen(
            [sys.executable, "-m", "tfrec.serve", "--server=embedded", f"--port={port}", "--model_name=long",
             f"--model_base_path={os.path.join(base, 'long')}", "--max_message_bytes=67108864"],
            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with RecommenderClient(f"127.0.0.1:{port}", "long", timeout=600) as client:
                client.wait_until_available(process=server)
                rng = np.random.default_rng(0)
                print(f"{'request':>9} {'history':>8} {'peak RSS MB':>12} {'seconds':>8}  answer")
                idle = _peak_mb(server.pid)
                print(f"{'':>9} {0:>8} {idle:>12.0f} {'':>8}  (idle)")
                rows = [("(idle)", 0, idle, None, "")]
                requests = [("recommend", int(n)) for n in _LENGTHS.value.split(",") if n]
                requests += [("explain", int(n)) for n in _EXPLAIN_LENGTHS.value.split(",") if n]
                for kind, length in requests:
                    # From the first half of the catalogue: the other half is left to recommend.
                    history = [f"i{i}" for i in rng.integers(1, NUM_ITEMS // 2 + 1, length)]
                    start = time.monotonic()
                    try:
                        if kind == "recommend":
                            answer = f"{len(client.recommend([history], k=10).item_ids[0])} items"
                        else:
                            answer = f"explained ({client.explain([history], [['i2000']]).influence.shape})"
                    except ServingError as error:
                        answer = f"{error.code.name}: {error.message[-90:]}"
                    if server.poll() is not None:
                        print(f"{kind:>9} {length:>8} {'killed':>12} {time.monotonic() - start:>8.1f}  server exited "
                              f"{server.returncode}")
                        rows.append((kind, length, float("inf"), time.monotonic() - start,
                                     f"server exited {server.returncode}"))
                        break
                    rows.append((kind, length, _peak_mb(server.pid), time.monotonic() - start, answer))
                    print(f"{kind:>9} {length:>8} {rows[-1][2]:>12.0f} {rows[-1][3]:>8.1f}  {answer}")
        finally:
            server.terminate()
            server.wait(60)
    _write(rows)


def _write(rows):
    """The table of `rows` (request, history length, peak MB, seconds, answer) and its verdict, to `--output`."""
    idle, peak = rows[0][2], max(row[2] for row in rows)
    verdict = (f"Peak {peak:.0f} MB against {idle:.0f} MB idle: {peak - idle:.0f} MB added (budget "
               f"{_BUDGET_MB.value} MB: {'met' if peak - idle <= _BUDGET_MB.value else 'NOT met'}).")
    table = ["| request | history ids | peak RSS MB | seconds | answer |", "|---|---:|---:|---:|---|",
             *(f"| {kind} | {length:,} | {mb:.0f} | {'' if seconds is None else f'{seconds:.1f}'} | {answer} |"
               for kind, length, mb, seconds, answer in rows)]
    print(verdict)
    if _OUTPUT.value:
        body = "\n".join(["## One long history against the server's memory (`scripts/bench_long_history.py`)", "",
                          __doc__.split("Example:")[0].strip().split("\n", 1)[1].strip(), "",
                          f"Command: `python {' '.join(['scripts/bench_long_history.py', *sys.argv[1:]])}`; "
                          f"machine: {benchlib.machine()}.", "", *table, "", verdict])
        benchlib.write_section(_OUTPUT.value, "bench_long_history", body)


if __name__ == "__main__":
    app.run(main)
