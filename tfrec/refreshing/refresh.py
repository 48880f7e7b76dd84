"""The periodic refresh: fine-tune the served model on new logs, test before and after, export the better.

`refresh(config, new_logs)` takes the run directory of the model being
served (`RefreshConfig.serving_run`) and the new behaviour logs (any
`DataConfig` source, with the run's column options), in four steps:

1. `_grown_data`: the run's own data is loaded again and the new logs
   appended (`tfrec.data.combine`); logs that start inside the run's
   training window are refused unless `allow_overlap` (rows found in both
   then count once); the newest `test_fraction` of the new logs' time span
   is held out (`tfrec.data.window_split`): the before/after test;
2. before: the served model on that window, its catalogue grown with the new
   items (scored from their text, as a catalogue update would serve them);
3. after: the served model warm-started (`warm_start_model`) and fine-tuned on
   what it never trained on (`PreparedData.training_not_in` its own split):
   the training behaviours of the new logs and those its split held out, their
   histories reaching back into the old logs, with early stopping on each
   user's last training behaviour;
4. `_publish`, after the gate (`gate.gate`): the new model is exported as the
   next version only when its `gate_metric` beats the served one's by
   `min_improvement` (default 0: not worse); both figures go into that
   version's model card and into `RUN_DIR/refresh.json` either way. A running
   server picks the new version up by itself (its base path is polled).

Example:

>>> config = RefreshConfig(serving_run="runs/retrieval", run_dir="runs/retrieval-w49", model_name="retrieval")
>>> result = refresh(config, DataConfig(source="table:interactions=logs_week_49.csv,items=items.csv"))
>>> result.exported.version if result.exported else result.verdict          # doctest: +SKIP
"""

import dataclasses
import os
from typing import Optional

import numpy as np
from absl import logging

from tfrec.config import require
from tfrec.data import DataConfig, combine, prepare, schema, sources, window_split
from tfrec.evaluation import protocol
from tfrec.exporting import exporter, layout
from tfrec.models import ModelConfig
from tfrec.refreshing.config import RefreshConfig
from tfrec.refreshing.gate import gate
from tfrec.training import RunDirectory, TrainConfig, Trainer
from tfrec.training.warm_start import warm_start_model

REPORT = "refresh.json"


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


def refresh(config: RefreshConfig, new_logs: DataConfig, train_config: Optional[TrainConfig] = None) -> RefreshResult:
    """Fine-tunes the model of `config.serving_run` on `new_logs`, gates it on their newest window,
    exports it if better.

    Args:
        config: `RefreshConfig`: the served run, the refreshed run's directory, where versions are
            exported, the test window and the gate.
        new_logs: `DataConfig` of the new logs (its source; its column options should be the run's).
        train_config: how to fine-tune (default `TrainConfig()`: a short automatic schedule).

    Returns:
        `RefreshResult`.

    Raises:
        ConfigError: the logs overlap the run's window, leave nothing to train or test, or a config
            value is invalid; raised before training.
    """
    config.validate()
    train_config = train_config or TrainConfig()
    saved = RunDirectory(config.serving_run).read_config()
    data_config, model_config = DataConfig.from_dict(saved["data_config"]), ModelConfig.from_dict(saved["model_config"])
    data, old_tables, test_start = _grown_data(config, data_config, new_logs)
    # What the served model never trained on: the new logs and its own held-out behaviours.
    # Raises when that leaves nothing to train on.
    new_training = data.training_not_in(data_config.split_tables(old_tables).train, replay=config.replay,
                                        seed=train_config.seed)
    trainer = Trainer(train_config)
    metric = (config.gate_metric if config.gate_metric != "auto"
              else train_config.monitor_for(model_config).removeprefix("val_"))
    held_out = protocol.HeldOut.from_data(data, "test")

    def evaluate(model):
        return protocol.evaluate_model(model, held_out, model.cfg, train_config.eval_ks,
                                       train_config.eval_batch_size)

    # Before any step, the warm-started model is the served one on the grown catalogue.
    model = warm_start_model(config.serving_run, data, strategy=trainer.strategy)
    before = evaluate(model)
    trainer.fit(model, new_training, run_dir=config.run_dir)
    after = evaluate(model)
    passed, verdict = gate(before, after, metric, config.min_improvement)
    facts = {"new_logs": new_logs.source, "test_window_start": test_start, "test_behaviours": len(data.split.test),
             "gate_metric": metric, "before": before, "after": after, "passed": passed, "verdict": verdict}
    exported = _publish(config, facts)
    logging.info("refresh: %s", verdict)
    return RefreshResult(before, after, metric, passed, verdict, exported, config.run_dir)


def _grown_data(config: RefreshConfig, data_config: DataConfig, new_logs: DataConfig) -> tuple:
    """(the served run's logs with `new_logs` appended, split at the test window, as `PreparedData`;
    the run's own tables; the first timestamp of the test window)."""
    require(data_config.source, f"the run at {config.serving_run} was trained on data with no source to load "
            "again (e.g. DataFrames): refresh needs its logs")
    require(sources.source_kind(data_config.source) != sources.STREAMED,
            f"the run at {config.serving_run} was trained on converted examples ({data_config.source}): refresh "
            "appends new logs to the run's logs, so it needs the tables they were converted from")
    old_tables, new_tables = data_config.load_tables(), new_logs.load_tables()
    old_end = int(old_tables.interactions[schema.TIMESTAMP].max())
    new_times = new_tables.interactions[schema.TIMESTAMP].to_numpy()
    overlap = int((new_times <= old_end).sum())
    require(config.allow_overlap or not overlap,
            f"DataConfig.source={new_logs.source!r}: {overlap} of its {len(new_times)} behaviours are at or before "
            f"the last behaviour the served run trained on (timestamp {old_end}): they overlap its training "
            "window; pass only newer logs, or allow_overlap=True (--allow_overlap) to train on them anyway")
    tables = combine(old_tables, new_tables)
    start, end = int(new_times.min()), int(new_times.max())
    test_start = start + int(np.ceil((1 - config.test_fraction) * (end - start)))
    rule = data_config.checked_target_rule(tables)
    data = prepare(data_config, tables=tables, split=window_split(
        tables.interactions, test_start, targets=None if rule.selects_all else rule.mask(tables.interactions)))
    require(len(data.split.test), f"no new behaviour from timestamp {test_start} on to test on")
    return data, old_tables, test_start


def _publish(config: RefreshConfig, facts: dict) -> Optional[exporter.ExportResult]:
    """Exports the refreshed run as the next version when it passed the gate; writes `RUN_DIR/refresh.json`
    (`facts` and the served run and version) either way. Returns the export, or None."""
    served_versions = layout.existing_versions(os.path.join(config.export_base, config.model_name))
    facts = {"served_run": os.path.abspath(config.serving_run),
             "served_version": served_versions[-1] if served_versions else None,
             "min_improvement": config.min_improvement, "replay": config.replay, **facts}
    options = exporter.ExportOptions(allow_below_baseline=config.allow_below_baseline)
    exported = (exporter.export_run(config.run_dir, config.export_base, config.model_name, options, refresh=facts)
                if facts["passed"] else None)
    RunDirectory(config.run_dir).write_json(REPORT,
                                            dict(facts, exported_version=exported.version if exported else None))
    return exported
