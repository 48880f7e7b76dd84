"""The periodic refresh: fine-tune the served model on new logs, test before and after, export the better.

Python: `refresh(...)`; command line: `python -m tfrec.refresh` (flags below).

`refresh` takes the run directory of the model being served and the new
behaviour logs (any `--source`, with the run's column options):

1. the run's own data is loaded again and the new logs appended
   (`tfrec.data.combine`); logs that start inside the run's training window
   are refused unless `allow_overlap` (rows found in both then count once);
2. the newest `test_fraction` of the new logs' time span is held out
   (`tfrec.data.window_split`): the before/after test;
3. before: the served model on that window, its catalogue grown with the new
   items (scored from their text, as a catalogue update would serve them);
4. after: the served model warm-started (`warm_start_model`) and fine-tuned on
   what it never trained on (`PreparedData.training_not_in` its own split):
   the training behaviours of the new logs and those its split held out, their
   histories reaching back into the old logs, with early stopping on each
   user's last training behaviour;
5. the gate: the new model is exported as the next version only when its
   `gate_metric` beats the served one's by `min_improvement` (default 0: not
   worse); both figures go into that version's model card and into
   `RUN_DIR/refresh.json` either way. A running server picks the new version
   up by itself (its base path is polled).

Command line:

    python -m tfrec.refresh --serving_run=runs/retrieval --source=table:interactions=logs_w49.csv,items=items.csv \\
        --run_dir=runs/retrieval-w49 --export_base=exports --model_name=retrieval [--min_improvement=0.005]

Loads the served run's own logs again and appends the new ones (`--source`;
the other data flags default to the served run's, e.g. its column names),
holds out the newest `--test_fraction` of the new logs' time span, measures
the served model there (its catalogue grown with the new items), fine-tunes
it on the rest of the new logs and the behaviours its own split held out
(warm start: fresh optimizer, short schedule;
the train flags given here apply), measures it again, and exports it as the
next version of `--model_name` only when it passes the gate; both figures go
into that version's model card and `RUN_DIR/refresh.json`. A server polling
`EXPORT_BASE/MODEL_NAME` swaps to the new version by itself. Logs that
overlap the served run's training window are refused unless
`--allow_overlap`. Exit status 0 whether or not the gate passed (the last line
says which); 1 on an error.

Example:

>>> result = refresh("runs/retrieval", DataConfig(source="table:interactions=logs_week_49.csv,items=items.csv"),
...                  "runs/retrieval-w49", "exports", "retrieval")           # doctest: +SKIP
>>> result.exported.version if result.exported else result.verdict          # doctest: +SKIP
"""

import dataclasses
import os
from typing import Optional

import numpy as np
from absl import flags, logging

from tfrec import quiet

quiet.configure(__name__)  # before TensorFlow is imported
from tfrec import config_flags  # noqa: E402
from tfrec.config import ConfigError, require  # noqa: E402
from tfrec.data import DataConfig, DataError, combine, prepare, schema, sources, window_split  # noqa: E402
from tfrec.evaluation import protocol  # noqa: E402
from tfrec.exporting import exporter, layout  # noqa: E402
from tfrec.models import ModelConfig  # noqa: E402
from tfrec.training import TrainConfig, Trainer  # noqa: E402
from tfrec.training import run_dir as run_files  # noqa: E402
from tfrec.training.warm_start import warm_start_model  # noqa: E402

REPORT = "refresh.json"
LOWER_IS_BETTER = ("RMSE", "MAE", "LogLoss")


@dataclasses.dataclass
class RefreshResult:
    """What `refresh` found and did.

    Attributes:
        before, after: the served and the refreshed model's metrics on the held-out window.
        gate_metric: the metric the gate compares.
        passed: whether the refreshed model passed the gate.
        verdict: one sentence saying what was decided and why.
        exported: the `ExportResult` of the new version, or None.
        run_dir: the refreshed model's run directory.
    """

    before: dict
    after: dict
    gate_metric: str
    passed: bool
    verdict: str
    exported: Optional[exporter.ExportResult]
    run_dir: str


def _gate(before, after, metric, min_improvement):
    """(passed, verdict) of the refreshed figures against the served ones."""
    require(metric in before, f"gate_metric={metric!r}: the model's metrics are {sorted(before)}")
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    gain = sign * (after[metric] - before[metric])
    passed = gain >= min_improvement
    direction = "lower" if sign < 0 else "higher"
    verdict = (f"{metric} {before[metric]:.4f} -> {after[metric]:.4f} ({direction} is better; improvement "
               f"{gain:+.4f}, required {min_improvement:+.4f}): "
               + ("exported as a new version" if passed else "not exported, the served version stays"))
    return passed, verdict


def refresh(serving_run: str, new_logs: DataConfig, run_dir: str, export_base: str, model_name: str,
            train_config: Optional[TrainConfig] = None, min_improvement: float = 0.0, test_fraction: float = 0.2,
            allow_overlap: bool = False, gate_metric: str = "auto", replay: float = 0.0) -> RefreshResult:
    """Fine-tunes the model of `serving_run` on `new_logs`, gates it on their newest window, exports it if better.

    Args:
        serving_run: the finished run directory of the served model.
        new_logs: `DataConfig` of the new logs (its source; its column options should be the run's).
        run_dir: run directory of the refreshed model (new, or this refresh's to resume).
        export_base, model_name: where versions of the served model are (`EXPORT_BASE/MODEL_NAME/N`).
        train_config: how to fine-tune (default `TrainConfig()`: a short automatic schedule).
        min_improvement: how much better the gate metric must get (0: not worse).
        test_fraction: share of the new logs' time span held out for the before/after test.
        allow_overlap: accept new logs that start inside the run's training window.
        gate_metric: metric of the gate; "auto": the run's early-stopping metric without "val_".
        replay: share of the users whose older training examples are mixed into the fine-tuning,
            drawn at random (`PreparedData.training_not_in`; 0: only what the served model never
            trained on: the new logs and its held-out behaviours).

    Returns:
        `RefreshResult`.

    Raises:
        ConfigError: the logs overlap the run's window, leave nothing to train or test, or an
            argument is invalid; raised before training.
    """
    require(0 < test_fraction < 1, f"test_fraction={test_fraction}: expected a share in (0, 1)")
    require(0 <= replay <= 1, f"replay={replay}: expected a share in [0, 1]")
    require(os.path.abspath(run_dir) != os.path.abspath(serving_run),
            f"run_dir={run_dir}: the refreshed model needs its own run directory, not the served run's")
    train_config = train_config or TrainConfig()
    saved = run_files.read_config(serving_run)
    data_config, model_config = DataConfig.from_dict(saved["data_config"]), ModelConfig.from_dict(saved["model_config"])
    require(data_config.source, f"the run at {serving_run} was trained on data with no source to load "
            "again (e.g. DataFrames): refresh needs its logs")
    require(sources.source_kind(data_config.source) != sources.STREAMED,
            f"the run at {serving_run} was trained on converted examples ({data_config.source}): refresh appends new "
            "logs to the run's logs, so it needs the tables they were converted from")
    old_tables, new_tables = data_config.load_tables(), new_logs.load_tables()
    old_end = int(old_tables.interactions[schema.TIMESTAMP].max())
    new_times = new_tables.interactions[schema.TIMESTAMP].to_numpy()
    overlap = int((new_times <= old_end).sum())
    require(allow_overlap or not overlap,
            f"DataConfig.source={new_logs.source!r}: {overlap} of its {len(new_times)} behaviours are at or before "
            f"the last behaviour the served run trained on (timestamp {old_end}): they overlap its training "
            "window; pass only newer logs, or allow_overlap=True (--allow_overlap) to train on them anyway")
    tables = combine(old_tables, new_tables)
    start, end = int(new_times.min()), int(new_times.max())
    test_start = start + int(np.ceil((1 - test_fraction) * (end - start)))
    data = prepare(data_config, tables=tables, split=window_split(tables.interactions, test_start))
    require(len(data.split.test), f"no new behaviour from timestamp {test_start} on to test on")
    # What the served model never trained on: the new logs and its own held-out behaviours.
    # Raises when that leaves nothing to train on.
    new_training = data.training_not_in(data_config.split_tables(old_tables).train, replay=replay,
                                        seed=train_config.seed)
    trainer = Trainer(train_config)
    metric = gate_metric if gate_metric != "auto" else train_config.monitor_for(model_config).removeprefix("val_")
    held_out = protocol.HeldOut.from_data(data, "test")

    def evaluate(model):
        return protocol.evaluate_model(model, held_out, model.cfg, train_config.eval_ks,
                                       train_config.eval_batch_size)

    # Before any step, the warm-started model is the served one on the grown catalogue.
    model = warm_start_model(serving_run, data, strategy=trainer.strategy)
    before = evaluate(model)
    trainer.fit(model, new_training, run_dir=run_dir)
    after = evaluate(model)
    passed, verdict = _gate(before, after, metric, min_improvement)
    served_versions = layout.existing_versions(os.path.join(export_base, model_name))
    facts = {"served_run": os.path.abspath(serving_run), "served_version": served_versions[-1] if served_versions
             else None, "new_logs": new_logs.source, "test_window_start": test_start,
             "test_behaviours": len(data.split.test), "gate_metric": metric, "min_improvement": min_improvement,
             "replay": replay,
             "before": before, "after": after, "passed": passed, "verdict": verdict}
    exported = exporter.export_run(run_dir, export_base, model_name, refresh=facts) if passed else None
    run_files.write_json_atomic(os.path.join(run_dir, REPORT),
                                dict(facts, exported_version=exported.version if exported else None))
    logging.info("refresh: %s", verdict)
    return RefreshResult(before, after, metric, passed, verdict, exported, run_dir)


CONFIGS = (DataConfig, TrainConfig)


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the flags of `python -m tfrec.refresh` in `flag_values`."""
    flags.DEFINE_string("serving_run", None, "Finished run directory of the model being served.",
                        flag_values=flag_values)
    flags.DEFINE_string("run_dir", None, "Run directory of the refreshed model (new, or a killed refresh's).",
                        flag_values=flag_values)
    flags.DEFINE_string("export_base", "exports", "Directory holding one sub-directory per model name.",
                        flag_values=flag_values)
    flags.DEFINE_string("model_name", None, "Served model name: a passing model is exported to "
                        "EXPORT_BASE/MODEL_NAME/NEXT_VERSION.", flag_values=flag_values)
    flags.DEFINE_float("min_improvement", 0.0, "How much the gate metric must improve (0: not worse; negative: "
                       "accept a small loss).", flag_values=flag_values)
    flags.DEFINE_string("gate_metric", "auto", "Metric of the gate, e.g. HR@10 or RMSE (lower is better for "
                        "RMSE, MAE, LogLoss); auto: the early-stopping metric.", flag_values=flag_values)
    flags.DEFINE_float("test_fraction", 0.2, "Newest share of the new logs' time span held out for the "
                       "before/after test.", lower_bound=0.0, upper_bound=1.0, flag_values=flag_values)
    flags.DEFINE_bool("allow_overlap", False, "Accept new logs that start inside the served run's training window "
                      "(rows in both count once).", flag_values=flag_values)
    flags.DEFINE_float("replay", 0.0, "Share of the users whose older training examples are mixed into the "
                       "fine-tuning, drawn at random (0: only the new logs and the served run's held-out "
                       "behaviours; 1: every log).", lower_bound=0.0, upper_bound=1.0,
                       flag_values=flag_values)
    for cls in CONFIGS:
        config_flags.define_flags(cls, flag_values)
    flags.mark_flags_as_required(["serving_run", "run_dir", "model_name", "source"], flag_values=flag_values)


def run(flag_values: flags.FlagValues = flags.FLAGS) -> RefreshResult:
    """Runs the refresh the parsed `flag_values` describe.

    Raises:
        ConfigError: naming the flag at fault; raised before training.
    """
    with config_flags.named_as_flags(DataError):
        saved = run_files.read_config(flag_values.serving_run)
        new_logs = DataConfig.from_dict(saved["data_config"]).replace(
            **config_flags.given_values(DataConfig, flag_values)).validate()
        return refresh(
            flag_values.serving_run, new_logs, flag_values.run_dir, flag_values.export_base, flag_values.model_name,
            train_config=config_flags.from_flags(TrainConfig, flag_values),
            min_improvement=flag_values.min_improvement, test_fraction=flag_values.test_fraction,
            allow_overlap=flag_values.allow_overlap, gate_metric=flag_values.gate_metric, replay=flag_values.replay)


def main(argv):
    result = run(flags.FLAGS)
    exported = f" (version {result.exported.version}: {result.exported.path})" if result.exported else ""
    print(f"tfrec.refresh: {result.verdict}{exported}")


if __name__ == "__main__":
    names = config_flags.defined(define_flags)
    config_flags.run(main, config_flags.help_groups("refresh flags", names, CONFIGS), errors=(ConfigError, OSError))
