"""tfrec: a TensorFlow recommender over behaviour logs and item text.

Example:

>>> import tfrec
>>> data = tfrec.data.from_dataframes(logs_df, items_df)
>>> model = tfrec.models.build_model(tfrec.models.ModelConfig(task="retrieval", encoder="minilm"), data)
>>> result = tfrec.Trainer(tfrec.TrainConfig(epochs=20)).fit(model, data, run_dir="runs/x")
>>> item_ids, scores = model.recommend([["i1", "i7", "i3"]], k=10)

Subpackages are imported on first use, so `import tfrec` stays light.
"""

import importlib
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

_SUBPACKAGES = ("baselines", "client", "data", "evaluation", "exporting", "models", "server", "training")
_TRAINING = ("Trainer", "TrainConfig", "TrainResult", "load_run")


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"tfrec.{name}")
    if name in _TRAINING:
        return getattr(importlib.import_module("tfrec.training"), name)
    raise AttributeError(f"module 'tfrec' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_SUBPACKAGES, *_TRAINING])
