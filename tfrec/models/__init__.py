"""tfrec models: item and behaviour towers, task layers, the `Recommender`.

Example:

>>> from tfrec.models import ModelConfig, build_model
>>> model = build_model(ModelConfig(task="retrieval", encoder="tiny"), data)   # data: tfrec.data.PreparedData
>>> item_ids, scores = model.recommend([["i1", "i7"]], k=5)
"""

from tfrec.models.behaviour_tower import BehaviourTextTower, BehaviourTower, verbalise_history
from tfrec.models.catalogue_retrieval import CatalogueRetrieval
from tfrec.models.config import ModelConfig
from tfrec.models.features import history_features
from tfrec.models.item_tower import ItemTower
from tfrec.models.ranking_task import RankingTask
from tfrec.models.rating_head import RatingHead
from tfrec.models.recommender import Recommender, build_model
from tfrec.models.request_encoder import RequestEncoder
from tfrec.models.retrieval_task import RetrievalTask
from tfrec.models.transition_prior import TransitionPrior

__all__ = [
    "BehaviourTextTower",
    "BehaviourTower",
    "CatalogueRetrieval",
    "ItemTower",
    "ModelConfig",
    "RankingTask",
    "RatingHead",
    "Recommender",
    "RequestEncoder",
    "RetrievalTask",
    "TransitionPrior",
    "build_model",
    "history_features",
    "verbalise_history",
]
