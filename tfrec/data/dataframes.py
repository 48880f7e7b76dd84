"""DataFrames in: behaviour logs and an item catalogue held as pandas DataFrames.

`from_dataframes` validates them exactly as the `table:` source validates
files (same checks, same messages; rows are numbered from 1 in DataFrame
order), then splits them and builds the examples.

Example:

>>> import pandas as pd
>>> logs = pd.DataFrame({"user_id": ["u1", "u1", "u1", "u2", "u2", "u2"],
...                      "item_id": ["i1", "i2", "i3", "i2", "i3", "i1"],
...                      "timestamp": [1, 2, 3, 1, 2, 3]})
>>> items = pd.DataFrame({"item_id": ["i1", "i2", "i3"], "title": ["Heat", "Alien", "Up"]})
>>> data = from_dataframes(logs, items, history_length=5)
>>> data.vocab.num_items, len(data.examples["test"]["target_item_id"])
(3, 2)
"""

from typing import Optional

import pandas as pd

from tfrec.data import errors
from tfrec.data.dataset import RawTable
from tfrec.data.prepared import DataConfig, PreparedData, prepare
from tfrec.data.table import assemble_tables


def from_dataframes(interactions: pd.DataFrame, items: pd.DataFrame, users: Optional[pd.DataFrame] = None,
                    config: Optional[DataConfig] = None, name: str = "dataframes", **config_fields) -> PreparedData:
    """Validates, splits and builds examples from DataFrames.

    Args:
        interactions: one row per behaviour; columns named by `user_col`,
            `item_col`, `time_col` and optionally `rating_col`, `event_col`.
        items: the catalogue; `item_col` plus text columns (`title_col`,
            `description_col`, `genres_col`).
        users: optional user table (`user_col` plus feature columns).
        config: a `DataConfig` (its `source` is not read); default `DataConfig()`.
        name: the data set's name in messages and run directories.
        **config_fields: `DataConfig` fields overriding `config`'s, e.g.
            `user_col="customer"`, `split="temporal"`, `history_length=20`.

    Returns:
        `PreparedData`.

    Raises:
        tfrec.data.DataError: naming the DataFrame, row, field and what was expected.
        tfrec.config.ConfigError: an invalid config field.
    """
    # The run directory records the config: no source, the data came as DataFrames.
    config = (config or DataConfig()).replace(source=None, **config_fields).validate()
    frames = {"interactions": interactions, "items": items, "users": users}
    raws = {}
    for role, frame in frames.items():
        if frame is None:
            continue
        if not isinstance(frame, pd.DataFrame):
            raise errors.SourceError(f"expected a pandas DataFrame, got {type(frame).__name__}",
                                     file=f"{role} DataFrame")
        raws[role] = RawTable(frame.copy(), f"{role} DataFrame")
    checker = errors.RowChecker(config.on_bad_rows)
    tables = assemble_tables(name, raws, config.columns(), checker, **config.table_options())
    return prepare(config, tables)
