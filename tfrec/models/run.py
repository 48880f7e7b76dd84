"""Rebuilds the trained model of a `python -m tfrec.train` run directory.

Example:

>>> run = load_run("runs/ml100k_retrieval")
>>> scores = run.model.score_catalogue(features)
"""

import dataclasses

from tfrec.models.config import ModelConfig
from tfrec.models.recommender import build_model
from tfrec.training import run_dir


@dataclasses.dataclass
class Run:
    """A finished training run.

    Attributes:
        directory: the run directory.
        model: the model with the best weights loaded and its catalogue
            embeddings refreshed.
        vocab: `tfrec.data.Vocabulary` of the run.
        item_texts: list of str by catalogue index, [0] == "".
        config: the `ModelConfig`.
        flags: dict of the run's flag values.
    """

    directory: str
    model: object
    vocab: object
    item_texts: list
    config: ModelConfig
    flags: dict


def load_run(directory):
    """Loads `directory`'s config, vocabulary, item texts and best weights.

    Args:
        directory: a run directory written by `tfrec.train`.

    Returns:
        a `Run`.

    Raises:
        tfrec.training.run_dir.RunDirError: naming a missing file.
    """
    saved = run_dir.read_json(run_dir.path(directory, run_dir.CONFIG))
    config = ModelConfig.from_dict(saved["model_config"])
    vocab = run_dir.read_vocabulary(directory)
    item_texts = run_dir.read_item_texts(directory)
    model = build_model(config, vocab, item_texts)
    run_dir.load_weights(model, run_dir.path(directory, run_dir.WEIGHTS))
    model.refresh_catalogue()
    return Run(directory, model, vocab, item_texts, config, saved.get("flags", {}))
