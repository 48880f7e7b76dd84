"""`RefreshConfig`: what a refresh fine-tunes from, where it exports, and its gate; one field a
`python -m tfrec.refresh` flag.

Example:

>>> RefreshConfig(serving_run="runs/retrieval", run_dir="runs/retrieval-w49", model_name="retrieval",
...               min_improvement=0.005).validate().test_fraction
0.2
"""

import dataclasses
import os
from typing import Optional

from tfrec.config import Config, require


@dataclasses.dataclass
class RefreshConfig(Config):
    """A refresh of a served model: the run it starts from, where it goes, its test and gate.

    Attributes:
        serving_run: Finished run directory of the model being served.
        run_dir: Run directory of the refreshed model (new, or a killed refresh's).
        export_base: Directory holding one sub-directory per model name.
        model_name: Served model name: a passing model is exported to EXPORT_BASE/MODEL_NAME/NEXT_VERSION.
        min_improvement: How much the gate metric must improve (0: not worse; negative: accept a small loss).
        gate_metric: Metric of the gate, e.g. HR@10 or RMSE (lower is better for RMSE, MAE, LogLoss); auto:
            the early-stopping metric.
        test_fraction: Newest share of the new logs' time span held out for the before/after test.
        allow_overlap: Accept new logs that start inside the served run's training window (rows in both
            count once).
        replay: Share of the users whose older training examples are mixed into the fine-tuning, drawn at
            random (0: only the new logs and the served run's held-out behaviours; 1: every log).
        allow_below_baseline: Publish a refreshed model that passes the gate although its validation HR@10 or
            NDCG@10 is below the best baseline's (refused otherwise, as `tfrec.export` refuses it).
    """

    serving_run: Optional[str] = None
    run_dir: Optional[str] = None
    export_base: str = "exports"
    model_name: Optional[str] = None
    min_improvement: float = 0.0
    gate_metric: str = "auto"
    test_fraction: float = 0.2
    allow_overlap: bool = False
    replay: float = 0.0
    allow_below_baseline: bool = False

    def validate(self):
        """Raises `ConfigError` naming the first invalid field; returns self."""
        for name in ("serving_run", "run_dir", "model_name"):
            require(getattr(self, name), f"{self.name(name)}: required")
        self.check_range("test_fraction", above=0.0, below=1.0)
        self.check_range("replay", minimum=0.0)
        require(self.replay <= 1, f"{self.name('replay')}: expected a share in [0, 1]")
        require(os.path.abspath(self.run_dir) != os.path.abspath(self.serving_run),
                f"{self.name('run_dir')}: the refreshed model needs its own run directory, not the served run's")
        return self
