"""tfrec: a TensorFlow recommender over behaviour logs and item text."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"
