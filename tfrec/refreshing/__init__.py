"""The periodic refresh of a served model: `refresh`, its `RefreshConfig` and the before/after `gate`.

The command line is `python -m tfrec.refresh`.

Example:

>>> from tfrec.refreshing import RefreshConfig, refresh
>>> config = RefreshConfig(serving_run="runs/retrieval", run_dir="runs/retrieval-w49", model_name="retrieval")
>>> refresh(config, DataConfig(source="table:interactions=logs_w49.csv,items=items.csv")).verdict
"""

from tfrec.refreshing.config import RefreshConfig
from tfrec.refreshing.gate import gate
from tfrec.refreshing.refresh import RefreshResult, refresh

__all__ = ["RefreshConfig", "RefreshResult", "gate", "refresh"]
