"""The text encoder before and after training on the logs: one table, one split, one protocol.

Rows, on the data of the given runs (all trained on the same split):
- the pretrained encoder alone ("before"): each item is its frozen MiniLM text
  vector, a user the mean of their last N items' vectors (N chosen on
  validation), no training at all (`tfrec.baselines.TextProfile`);
- each form of run given (`--runs=NAME=DIR,...`): e.g. the frozen encoder with
  trained towers, item ids only. Runs
  named NAME, NAME_seed1, NAME_seed2 are averaged (test ± standard error);
- the counting baselines on the same targets, for scale.

Each model row gives test and validation HR@10 / NDCG@10 as trained (the
transition prior weighed on validation) and of the network alone (prior
weight 0), the epochs and the train wall time. The table goes to BENCHMARKS.md
(section `bench_encoder`) with the commands that trained the runs and the machine.

    nice .venv/bin/python -m tfrec.train --source=table:interactions=../shared/data/amazon-office/interactions.csv,\\
        items=../shared/data/amazon-office/items.csv --time_col=position \\
        --text_cols=title,brand,categories,description --run_dir=runs/office-frozen [--seed=1] [--use_text=false]
    .venv/bin/python scripts/bench_encoder.py --title="Amazon Office" --runs=frozen=runs/office-frozen,ids_only=runs/office-ids,...
"""

import os
import sys

from absl import app, flags

import benchlib
import bench_defaults
from bench_defaults import pair

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from tfrec import baselines  # noqa: E402
from tfrec.data import schema  # noqa: E402
from tfrec.evaluation import metrics, protocol  # noqa: E402
from tfrec.text_encoder import TextEncoder  # noqa: E402
from tfrec.models import ModelConfig  # noqa: E402
from tfrec.training import RunDirectory, load_run_data  # noqa: E402

PROFILE_RECENT = (1, 3, 5, 10, 20, 50, None)
"""Profile lengths tried on validation (None: the whole history)."""

flags.DEFINE_list("runs", [], "NAME=RUN_DIR pairs, all trained on one data set and split.")
flags.DEFINE_string("output", os.path.join(REPO_ROOT, "BENCHMARKS.md"), "Markdown file to write the table to.")
flags.DEFINE_string("title", None, "Name of the data set, for the section's heading, e.g. 'Amazon Office'.")
flags.mark_flag_as_required("title")
flags.DEFINE_bool("recalibrate", False, "Choose each run's prior weight again on validation with this code's "
                  "calibration step (as scripts/bench_defaults.py --recalibrate).")


def text_profile_figures(directory: str) -> dict:
    """The pretrained encoder alone on the data of the run at `directory`: {"test", "valid", "recent"}."""
    run, prepared = load_run_data(directory)
    encoder_config = run.model_config
    texts = prepared.item_texts
    encoder = TextEncoder(encoder_config.encoder, sequence_length=encoder_config.sequence_length)
    vectors = encoder.cached_vectors(texts)
    held_out = {split: protocol.HeldOut.from_data(prepared, split) for split in ("test", "valid")}

    def figures(recent, split):
        held = held_out[split]
        scores = baselines.TextProfile(vectors, recent).score(held.examples)
        targets = held.examples[schema.TARGET_ITEM_ID]
        return metrics.ranking_metrics(scores, targets, held.excluded_history(held.examples), ks=(10,),
                                       exclude=held.prior)

    recent = max(PROFILE_RECENT, key=lambda n: figures(n, "valid")["NDCG@10"])
    return {"test": figures(recent, "test"), "valid": figures(recent, "valid"), "recent": recent}


def main(argv):
    runs = bench_defaults.named_runs(argv)
    header = ("| form | test HR@10 / NDCG@10 | valid | network alone (prior weight 0), test | network alone, valid | "
              "epochs | train wall time |")
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    before = text_profile_figures(runs[0][1])
    latest = {None: "the whole history", 1: "the last item"}.get(before["recent"], f"the last {before['recent']} items")
    lines.append(f"| pretrained encoder alone (before): user = mean text vector of {latest} (chosen on valid) | "
                 f"{pair(before['test'])} | {pair(before['valid'])} | — | — | — | "
                 "none (no training) |")
    print(lines[-1], flush=True)
    named, commands = [], []
    for name, directory in runs:
        figures, command = bench_defaults.run_figures(directory)
        named.append((name, figures))
        commands.append(f"- {name}: `{command}`{_model_flags(directory)}")
    baselines_seen = named[0][1]["baselines"]
    if any(figures["baselines"] != baselines_seen for _, figures in named):
        raise app.UsageError("--runs: the runs hold different baseline figures: they were not trained on one split")
    for name, figures in [*named, *bench_defaults.seed_means(named)]:
        lines.append(f"| {name} | {pair(figures['test'])} | {pair(figures['valid'])} | "
                     f"{pair(figures['alone_test'])} | {pair(figures['alone_valid'])} | {figures['epochs'] or '—'} | "
                     f"{figures['minutes']:.1f} min |")
        print(lines[-1], flush=True)
    for baseline in bench_defaults.BASELINES:
        if baseline in baselines_seen:
            lines.append(f"| {baseline} (baseline) | {pair(baselines_seen[baseline])} | — | — | — | — | — |")
    title = flags.FLAGS.title
    body = "\n".join([
        f"## The text encoder before and after training on the logs: {title} (`scripts/bench_encoder.py`)", "",
        "Same split and protocol for every row (docs/evaluation.md). \"Before\": the pretrained encoder alone, no "
        "training. Model rows: `python -m tfrec.train` with only the data's flags plus the form's (below); the rows "
        "of NAME, NAME_seed1, NAME_seed2 are averaged (test ± standard error). \"Network alone\": the same model "
        "with the transition prior's weight at 0, so the text's share is not hidden by the counting evidence. Train "
        "wall times are each run's own on shared cores: compare them only between runs trained side by side.", "",
        f"Command: `python scripts/bench_encoder.py --title=\"{title}\" "
        f"--runs={','.join(f'{n}=RUN_DIR' for n, _ in runs)}`; machine: {benchlib.machine()}.", "",
        *lines, "", "Runs:", *commands])
    benchlib.write_section(flags.FLAGS.output, f"bench_encoder_{_slug(title)}", body)


def _model_flags(directory: str) -> str:
    """The run's model flags that differ from the defaults, e.g. ` with --use_text=false`."""
    saved = RunDirectory(directory).read_config()["model_config"]
    defaults = ModelConfig().to_dict()
    changed = [f"--{key}={str(value).lower() if isinstance(value, bool) else value}"
               for key, value in sorted(saved.items())
               if key in defaults and value != defaults[key] and key not in ("seed", "use_ratings", "use_time_gaps")]
    return f" with {' '.join(changed)}" if changed else ""


def _slug(title: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in title.lower()).strip("_")


if __name__ == "__main__":
    app.run(main)
