"""tfrec models: item and behaviour towers, retrieval / ranking / multitask models.

Example:

>>> from tfrec.models import ModelConfig, build_model
>>> model = build_model(ModelConfig(task="retrieval", encoder="tiny"), vocab, item_texts)
"""

from tfrec.models.behaviour_tower import BehaviourTextTower, BehaviourTower, verbalise_history
from tfrec.models.config import ModelConfig
from tfrec.models.item_tower import ItemTower
from tfrec.models.rating_head import RatingHead
from tfrec.models.recommender import (
    MultitaskModel,
    RankingModel,
    Recommender,
    RetrievalModel,
    build_model,
)
from tfrec.models.retrieval_task import RetrievalTask
from tfrec.models.run import Run, load_run

__all__ = [
    "BehaviourTextTower",
    "BehaviourTower",
    "ItemTower",
    "ModelConfig",
    "MultitaskModel",
    "RankingModel",
    "RatingHead",
    "Recommender",
    "RetrievalModel",
    "RetrievalTask",
    "Run",
    "build_model",
    "load_run",
    "verbalise_history",
]
