"""Loading a trained model back from its run directory.

A run directory is written by `python -m tfrec.train` (layout in
`tfrec.training.run_dir`). `load_run` rebuilds the model from the saved
`ModelConfig`, vocabulary and item texts, and loads the best weights.

Example:

>>> from tfrec.models import load_run
>>> run = load_run("runs/retrieval")
>>> run.model.item_embeddings(np.array([1, 2], dtype=np.int32)).shape
TensorShape([2, 64])
"""

import dataclasses
import os

from tfrec.models import ModelConfig, build_model
from tfrec.training import run_dir


@dataclasses.dataclass
class Run:
    """A trained run.

    Attributes:
        model: the keras model with the run's best weights.
        vocab: `data.Vocabulary` of the run.
        item_texts: list of item texts, `[0] == ""`, index order.
        config: the run's `ModelConfig`.
        flags: every flag value of the training command (data, model, training).
        directory: the run directory.
    """

    model: object
    vocab: object
    item_texts: list
    config: ModelConfig
    flags: dict
    directory: str


def load_run(directory):
    """Rebuilds the model of a finished training run and loads its weights.

    Args:
        directory: the `--run_dir` of a `python -m tfrec.train` run.

    Returns:
        `Run`.

    Raises:
        run_dir.RunDirError: a file of a finished run is missing.
    """
    record = run_dir.read_json(run_dir.path(directory, run_dir.CONFIG))
    config = ModelConfig.from_dict(record["model_config"])
    vocab = run_dir.read_vocabulary(directory)
    texts = run_dir.read_item_texts(directory)
    model = build_model(config, vocab, texts)
    run_dir.load_weights(model, run_dir.path(directory, run_dir.WEIGHTS))
    model.refresh_catalogue()  # the stored catalogue vectors follow the loaded weights
    return Run(model, vocab, texts, config, record["flags"], os.path.abspath(directory))
