"""Reference baselines scored under the same protocol as tfrec models.

Non-neural baselines (numpy): `Popularity`, `Transitions`, `ItemKNN`,
`Biases`, `GlobalMean`, and `TextProfile` (tfrec's pretrained item text
embeddings before any training). Each has `fit(train_examples)` and
`score(examples) -> [n, num_items + 1]` (plus `predict(examples) -> [n]`).
The TFRS tutorial models run in a separate process: see
`tfrec.baselines.tfrs_runner` (importing it does not import TensorFlow).
"""

from tfrec.baselines.base import Baseline
from tfrec.baselines.biases import Biases, GlobalMean
from tfrec.baselines.item_knn import ItemKNN
from tfrec.baselines.popularity import Popularity
from tfrec.baselines.text_profile import TextProfile
from tfrec.baselines.transitions import Transitions

__all__ = ["Baseline", "Biases", "GlobalMean", "ItemKNN", "Popularity", "TextProfile", "Transitions"]
