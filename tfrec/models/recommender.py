"""`Recommender`: sequential retrieval, ranking and multitask models in one Keras model.

An `ItemTower` embeds the catalogue (text through BERT and/or ids); a
`BehaviourTower` reads the user's history as a sequence of those item
embeddings and gives, at every position, a causal summary of the behaviours
so far (or a `BehaviourTextTower` encodes the verbalised history). The model
is composed of the task layers its `ModelConfig.task` names:

- retrieval: cosine(query, item) / temperature, trained with a full-catalogue
  or in-batch softmax (`RetrievalTask`);
- ranking: a predicted rating (squared error) or click probability (binary
  cross-entropy against sampled negatives) from a `RatingHead`, scored by
  `RankingTask`;
- multitask: both, on the shared towers, losses weighted by
  `retrieval_weight` and `ranking_weight`.

The Keras contract, as in TFRS and keras-rs: `call` (and so `predict`) returns
predictions, the query embedding after each history (retrieval) and the
rating or click probability of `target_item_id` (ranking), a dict of both for
multitask; `compute_loss` computes the training loss from the features. A
history window of N behaviours plus its target carries N next-item
predictions; with `sequence_training` the loss uses all of them
(SASRec-style) and `train_examples` keeps one non-overlapping window per
user stretch. `recommend` answers from item-id histories as the exported
model does.

Example:

>>> model = build_model(ModelConfig(task="retrieval", encoder="tiny"), data)
>>> model.compile(optimizer=keras.optimizers.AdamW(1e-3))
>>> model.adapt(data.examples["train"])
>>> model.fit(tfrec.data.to_tf_dataset(model.train_examples(data.examples["train"]), 64))
>>> model.refresh_catalogue()
>>> item_ids, scores = model.recommend([["i1", "i7", "i3"]], k=5)
"""

import keras
import numpy as np
from absl import logging
import tensorflow as tf
from keras.src.losses import loss as loss_module

from tfrec.config import ConfigError
from tfrec.data import schema
from tfrec.data.targets import TargetRule
from tfrec.models.behaviour_tower import BehaviourTextTower, BehaviourTower
from tfrec.models.catalogue_retrieval import CatalogueRetrieval
from tfrec.models.config import ModelConfig
from tfrec.models.features import history_features
from tfrec.models.inference import RecommenderInference
from tfrec.models.item_tower import ItemTower
from tfrec.models.sequence_losses import earlier_items, global_mean, next_item_ids, next_values
from tfrec.models.model_catalogue import ModelCatalogue
from tfrec.models.rating_head import RatingHead
from tfrec.models.ranking_task import RankingTask
from tfrec.models.transition_prior import TransitionPrior, neighbours_for
from tfrec.models.retrieval_task import RetrievalTask
from tfrec.models.training_rows import TrainingExamples

RETRIEVAL_TASKS = ("retrieval", "multitask")
RANKING_TASKS = ("ranking", "multitask")


@keras.saving.register_keras_serializable(package="tfrec")
class Recommender(ModelCatalogue, TrainingExamples, RecommenderInference, keras.Model):
    """A sequential recommender over a catalogue (see the module docstring).

    The constructor only creates the layers; `build()` encodes the catalogue
    texts and creates the weights (`build_model` does both). `get_config`
    holds the catalogue's sizes, `save_assets` the catalogue
    (`tfrec.models.model_catalogue`).

    Args:
        config: `ModelConfig` or its dict.
        vocab: `tfrec.data.Vocabulary`: the catalogue's item ids, the user ids
            and the event names, by index; None for a model whose catalogue
            `load_assets` gives next (then pass the sizes below).
        item_texts: list of str per catalogue index (index 0 = padding "").
        item_titles: list of str per catalogue index, the names the
            behaviour-text mode writes (default: `item_texts`).
        rating_offset: initial global bias of a rating head (the mean
            training rating).
        num_items, num_users, num_events: the catalogue's sizes (items and
            users without padding, events with it), needed without `vocab`.
        target_rule: the `tfrec.data.TargetRule` (or its dict) of the
            training data: which next behaviours the loss predicts (the
            others weigh `ModelConfig.context_loss_weight`) and which history
            items a ranking leaves out. Default: every behaviour.
        **kwargs: base model arguments.

    Example:

    >>> restored = Recommender.from_config(model.get_config())  # doctest: +SKIP
    >>> restored.load_assets(assets_dir)  # doctest: +SKIP
    """

    def __init__(self, config, vocab=None, item_texts=None, item_titles=None, rating_offset=0.0, num_items=None,
                 num_users=None, num_events=None, target_rule=None, **kwargs):
        super().__init__(**kwargs)
        cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
        self.cfg = cfg.validate()
        self.target_rule = target_rule if isinstance(target_rule, TargetRule) else TargetRule.from_dict(target_rule)
        self.vocab = self.item_texts = self.item_titles = self.request_encoder = None
        num_items, self.num_users, self.num_events = self._catalogue_sizes(vocab, num_items, num_users, num_events)
        self.num_rows = num_items + 1
        self.rating_offset = float(rating_offset)
        self.warm_started_from = None  # the run directory `tfrec.training.warm_start_model` started it from
        dim = cfg.embedding_dim
        encoder = {"source": cfg.encoder, "sequence_length": cfg.sequence_length,
                   "pooling": cfg.pooling, "trainable": cfg.encoder_trainable, "cache": cfg.text_cache}
        self.item_tower = ItemTower(
            num_rows=self.num_rows, embedding_dim=dim, encoder=encoder if cfg.use_text else None,
            use_item_ids=cfg.use_item_ids, id_dropout=cfg.id_dropout,
            refresh_items=cfg.text_refresh_items, seed=cfg.seed,
            name="item_tower")
        if cfg.behaviour_text:
            self.behaviour_tower = BehaviourTextTower(
                embedding_dim=dim,
                encoder=dict(encoder, sequence_length=cfg.behaviour_text_length),
                max_items=cfg.behaviour_text_items, name="behaviour_text_tower")
        else:
            self.behaviour_tower = BehaviourTower(
                dim, cfg.history_encoder, cfg.history_layers, cfg.history_heads, cfg.dropout,
                num_events=self.num_events, use_ratings=cfg.use_ratings, use_time_gaps=cfg.use_time_gaps,
                name="behaviour_tower")
        self.item_dropout = keras.layers.Dropout(cfg.dropout)
        self.query_projection = keras.layers.Dense(dim, name="query_projection")
        if cfg.use_user_ids:
            self.user_embedding = keras.layers.Embedding(self.num_users + 1, dim, name="user_embedding")
        # The item vectors inference reads, refreshed from the weights by `refresh_catalogue`.
        self.catalogue = CatalogueRetrieval(np.zeros((self.num_rows, dim), np.float32), name="catalogue")
        self.retrieval_task = None
        self.ranking_task = None
        if cfg.task in RETRIEVAL_TASKS:
            self.retrieval_task = RetrievalTask(
                cfg.softmax, cfg.temperature, cfg.logq_correction, cfg.remove_accidental_hits,
                cfg.hard_negatives, name="retrieval_task")
            self.retrieval_loss_tracker = keras.metrics.Mean(name="retrieval_loss")
        if cfg.task in RANKING_TASKS:
            click = cfg.ranking_target == "click"
            self.rating_head = RatingHead(
                self.num_rows, dim, self.num_users if cfg.use_user_ids else 0, cfg.dcn_layers, cfg.dropout,
                offset=0.0 if click else self.rating_offset, num_heads=cfg.history_heads, name="rating_head")
            self.ranking_task = RankingTask(cfg.ranking_target, name="ranking_task")
            self.ranking_loss_tracker = keras.metrics.Mean(name="ranking_loss")
        self.transition_prior = None
        if cfg.transition_prior == "auto" and cfg.task in RETRIEVAL_TASKS:
            self.transition_prior = TransitionPrior(self.num_rows, neighbours_for(self.num_rows),
                                                    name="transition_prior")
        uniform = np.full(self.num_rows, -np.log(max(self.num_rows - 1, 1)), np.float32)
        self.item_log_probability = keras.Variable(uniform, trainable=False, name="item_log_probability")
        self.trained_items = keras.Variable(np.ones(self.num_rows, np.float32), trainable=False,
                                            name="trained_items")
        if vocab is not None:
            self._set_catalogue(vocab, item_texts, item_titles)

    @property
    def has_retrieval(self) -> bool:
        """Whether the model has a retrieval task (ranks the catalogue)."""
        return self.retrieval_task is not None

    @property
    def has_ranking(self) -> bool:
        """Whether the model has a ranking task (scores given candidates)."""
        return self.ranking_task is not None

    # ----- construction -----

    def build(self, input_shape=None, encode_catalogue=True):
        """Encodes the catalogue texts and creates every weight (input shapes are not needed).

        `encode_catalogue=False` leaves a frozen encoder's text vectors empty, for weights loaded or copied
        next (`ItemTower.build`).
        """
        if self.built:
            return
        self._require_catalogue()
        self.item_tower.build(encode_catalogue=encode_catalogue)
        self.built = True
        # One forward pass on two dummy histories creates the towers' and heads' weights.
        dummy = history_features(tf.constant([[0, 1], [1, 1]], tf.int32) % self.num_rows,
                                 targets=tf.ones([2], tf.int32) % self.num_rows)
        self.task_losses(dummy, training=False)
        self.refresh_catalogue()

    # ----- shared pieces -----

    def _history_inputs(self, features, catalogue, training, history_vectors=None):
        ids = tf.cast(features[schema.HISTORY_ITEM_IDS], tf.int32)
        if history_vectors is None:
            history_vectors = self.item_dropout(tf.gather(catalogue, ids), training=training)
        inputs = {"item_ids": ids, "item_vectors": history_vectors}
        if self.cfg.use_ratings or self.has_ranking or self.cfg.behaviour_text:
            inputs["ratings"] = tf.cast(features[schema.HISTORY_RATINGS], tf.float32)
        if self.num_events > 1:
            inputs["events"] = tf.cast(features[schema.HISTORY_EVENTS], tf.int32)
        if self.cfg.use_time_gaps:
            inputs["timestamps"] = tf.cast(features[schema.HISTORY_TIMESTAMPS], tf.int64)
            inputs["next_timestamps"] = tf.cast(
                next_values(features, schema.HISTORY_TIMESTAMPS, schema.TARGET_TIMESTAMP), tf.int64)
        return inputs

    def _contexts(self, features, catalogue, training, history_vectors=None):
        """Behaviour summaries `[B, N, D]` and the history inputs.

        In behaviour-text mode every position holds the one text summary.
        `history_vectors` `[B, N, D]` replaces the history's item embeddings
        (integrated gradients scale them).
        """
        inputs = self._history_inputs(features, catalogue, training, history_vectors)
        contexts = self.behaviour_tower(inputs, training=training)
        if self.cfg.behaviour_text:
            contexts = tf.broadcast_to(contexts[:, None, :], tf.shape(inputs["item_vectors"]))
        return contexts, inputs

    def _queries(self, contexts, features):
        queries = self.query_projection(contexts)
        if self.cfg.use_user_ids:
            users = tf.cast(features[schema.USER_INDEX], tf.int32)
            queries += self.user_embedding(users)[:, None, :]
        return tf.math.l2_normalize(queries, axis=-1)

    def _loss_positions(self, features, next_ids, training):
        """The positions whose next-item prediction counts in the loss, bool `[B, N]`, and their weights
        (1 for a target, `context_loss_weight` for a context behaviour), float `[P]` over those positions."""
        ids = tf.cast(features[schema.HISTORY_ITEM_IDS], tf.int32)
        valid = tf.logical_and(ids > 0, next_ids > 0)
        if not (training and self.cfg.sequence_training and not self.cfg.behaviour_text):
            last = tf.one_hot(tf.shape(ids)[1] - 1, tf.shape(ids)[1], on_value=True, off_value=False)
            valid = tf.logical_and(valid, last[None, :])
        if self.target_rule.selects_all:
            return valid, None
        targets = self._is_target(next_values(features, schema.HISTORY_EVENTS, schema.TARGET_EVENT),
                                  next_values(features, schema.HISTORY_RATINGS, schema.TARGET_RATING))
        if self.cfg.context_loss_weight == 0.0:
            return tf.logical_and(valid, targets), None
        weights = tf.where(targets, 1.0, self.cfg.context_loss_weight)
        return valid, tf.boolean_mask(weights, valid)

    def _is_target(self, events, ratings):
        """bool: which behaviours, given by event index and rating, are targets of `target_rule`."""
        chosen = tf.ones_like(events, tf.bool)
        if self.target_rule.events:
            wanted = tf.constant(self.target_rule.event_indices(self.vocab), events.dtype)
            chosen = tf.reduce_any(tf.equal(events[..., None], wanted), axis=-1)
        if self.target_rule.min_rating is not None:
            chosen = tf.logical_and(chosen, tf.cast(ratings, tf.float32) >= self.target_rule.min_rating)
        return chosen

    def seen_to_exclude(self, request):
        """int32 `[B, H]`: the items of an encoded request's whole history (`RequestEncoder`) that a ranking
        leaves out, 0 for the others: every item, or with a `target_rule` excluding only earlier targets,
        those whose behaviour was a target (e.g. bought); every item when the request lacks the events or
        ratings the rule reads."""
        history, context = request["history"], request["history_context"]
        rule = self.target_rule
        if (rule.events and "events" not in context) or (rule.min_rating is not None and "ratings" not in context):
            return history
        return self._excluded(history, context.get("events", tf.zeros_like(history)),
                              context.get("ratings", tf.zeros_like(history, tf.float32)))

    def excluded_history(self, features):
        """int32 `[B, N]`: the history items of model features a ranking leaves out, 0 for the others."""
        return self._excluded(tf.cast(features[schema.HISTORY_ITEM_IDS], tf.int32), features[schema.HISTORY_EVENTS],
                              features[schema.HISTORY_RATINGS])

    def _excluded(self, ids, events, ratings):
        """`ids` with those the `target_rule` does not exclude (not targets, when only targets are) set to 0;
        a behaviour of unknown event ("", index 0) is excluded, as if it could have been a target."""
        if self.target_rule.excludes_every_seen_item:
            return ids
        return tf.where(tf.logical_or(self._is_target(events, ratings), tf.equal(events, 0)), ids, 0)

    def _ranking_losses(self, contexts, inputs, next_ids, positions, weights, catalogue, features, training):
        """The ranking loss of the `positions`, and their `weights` (None: equal)."""
        def head(candidates):
            return self._ranking_scores(contexts, inputs, candidates, catalogue, features, training)

        if self.ranking_task.target == "rating":
            ratings = tf.cast(next_values(features, schema.HISTORY_RATINGS, schema.TARGET_RATING), tf.float32)
            losses = self.ranking_task(head(next_ids), labels=ratings)
            rated = tf.boolean_mask(ratings > 0, positions)
            return (tf.boolean_mask(tf.boolean_mask(losses, positions), rated),
                    None if weights is None else tf.boolean_mask(weights, rated))
        negatives = tf.random.uniform(tf.shape(next_ids), 1, self.num_rows, dtype=tf.int32)
        losses = self.ranking_task(head(next_ids), negative_scores=head(negatives))
        return tf.boolean_mask(losses, positions), weights

    def _ranking_scores(self, contexts, inputs, candidate_ids, catalogue, features, training):
        """RatingHead scores `[B, N]` of `candidate_ids` `[B, N]` at each position."""
        head_inputs = {
            "context": contexts,
            "candidates": tf.gather(catalogue, candidate_ids),
            "candidate_ids": candidate_ids,
            "history_vectors": inputs["item_vectors"],
            "history_ids": inputs["item_ids"],
            "history_ratings": inputs["ratings"],
        }
        if self.cfg.use_user_ids:
            head_inputs["user_index"] = tf.cast(features[schema.USER_INDEX], tf.int32)
        return self.rating_head(head_inputs, training=training)

    # ----- the Keras contract -----

    def call(self, features, training=False):
        """Predictions after each example's history.

        Args:
            features: dict of schema features (`tfrec.data.build_examples`,
                or `tfrec.models.features.history_features`).

        Returns:
            retrieval: the query embeddings, float32 `[B, D]` (L2-normalised);
            ranking: the rating or click probability of `target_item_id`, `[B]`;
            multitask: `{"query_embeddings": ..., "scores": ...}`.
        """
        outputs = {}
        if self.has_retrieval:
            outputs["query_embeddings"] = self.query_embeddings(features)
        if self.has_ranking:
            outputs["scores"] = self.score(features)
        return outputs if len(outputs) > 1 else next(iter(outputs.values()))

    def task_losses(self, features, training=False):
        """The mean loss of each task over the predicted positions, `{"retrieval": ..., "ranking": ...}`."""
        next_ids = next_item_ids(features)
        positions, weights = self._loss_positions(features, next_ids, training)
        catalogue = self.item_tower.catalogue(training=training, focus_ids=tf.boolean_mask(next_ids, positions))
        contexts, inputs = self._contexts(features, catalogue, training)
        losses = {}
        if self.has_retrieval:
            queries = tf.boolean_mask(self._queries(contexts, features), positions)
            targets = tf.boolean_mask(next_ids, positions)
            exclusions = None
            if self.cfg.exclude_seen:
                exclusions = tf.boolean_mask(earlier_items(self.excluded_history(features), self.num_rows), positions)
            per_query = self.retrieval_task(queries, targets, catalogue, self.item_log_probability,
                                            self.trained_items, exclusions)
            losses["retrieval"] = global_mean(per_query, weights)
        if self.has_ranking:
            losses["ranking"] = global_mean(*self._ranking_losses(
                contexts, inputs, next_ids, positions, weights, catalogue, features, training))
        return losses

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The weighted sum of the task losses of the batch of features `x`.

        `y` and `y_pred` are not read: a window's loss covers every position
        of its history, which the predictions (last position only) do not hold.
        """
        losses = self.task_losses(x, training=training)
        total = 0.0
        if self.has_retrieval:
            self.retrieval_loss_tracker.update_state(losses["retrieval"])
            total += self.cfg.retrieval_weight * losses["retrieval"]
        if self.has_ranking:
            self.ranking_loss_tracker.update_state(losses["ranking"])
            total += self.cfg.ranking_weight * losses["ranking"]
        for loss in self.losses:
            total += loss
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return total / replicas

    def _track_loss(self, loss, x):
        batch = tf.shape(x[schema.TARGET_ITEM_ID])[0]
        self._loss_tracker.update_state(loss_module.unscale_loss_for_distribution(loss), sample_weight=batch)

    def train_step(self, data):
        # As Keras' TensorFlow train step, without its forward pass for `y_pred`
        # (TFRS' `Model.train_step` likewise calls `compute_loss` alone).
        with tf.GradientTape() as tape:
            loss = self.compute_loss(x=data, training=True)
            self._track_loss(loss, data)
            loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        return self.get_metrics_result()

    def test_step(self, data):
        self._track_loss(self.compute_loss(x=data, training=False), data)
        return self.get_metrics_result()

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, then `refresh_catalogue()`: inference reads the trained item vectors."""
        history = super().fit(*args, **kwargs)
        self.refresh_catalogue()
        return history

    def predict(self, x, *args, **kwargs):
        """`keras.Model.predict` after `refresh_catalogue()` (the item vectors follow the weights)."""
        self.refresh_catalogue()
        return super().predict(x, *args, **kwargs)

    # ----- inference -----

    def query_embeddings(self, features, history_vectors=None):
        """L2-normalised query vectors `[B, D]` for the schema history features
        (`history_vectors`: optional `[B, N, D]` in place of the history's item embeddings)."""
        contexts, _ = self._contexts(features, self.catalogue.candidate_embeddings, training=False,
                                     history_vectors=history_vectors)
        return self._queries(contexts, features)[:, -1, :]

    def score(self, features, history_vectors=None):
        """Ranking prediction for `features[TARGET_ITEM_ID]` after the history, `[B]`:
        the predicted rating, or the click probability."""
        if not self.has_ranking:
            raise ValueError("score needs a ranking or multitask model")
        catalogue = self.catalogue.candidate_embeddings
        contexts, inputs = self._contexts(features, catalogue, training=False, history_vectors=history_vectors)
        raw = self._ranking_scores(contexts, inputs, next_item_ids(features), catalogue, features, False)[:, -1]
        return self.ranking_task.predictions(raw)

    # ----- serialisation -----

    def get_config(self):
        return {
            "config": self.cfg.to_dict(),
            "rating_offset": self.rating_offset,
            "num_items": self.num_rows - 1,
            "num_users": self.num_users,
            "num_events": self.num_events,
            "target_rule": self.target_rule.to_dict(),
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

def build_model(config, data, encode_catalogue=True):
    """Builds the model `config` describes on `data`'s catalogue, weights included.

    Args:
        config: `ModelConfig`.
        data: `tfrec.data.PreparedData` (or any object with its `vocab`,
            `item_texts`, `item_titles` and `rating_mean`, such as the
            catalogue of a run directory).
        encode_catalogue: False for a model whose weights are loaded next: a
            frozen encoder's catalogue vectors are then not computed (they are
            weights), which saves the minutes of encoding a catalogue.

    Returns:
        a built, uncompiled `Recommender`, its unset config fields derived
        from `data` (`ModelConfig.for_data`; `model.derived_settings` says
        why). Seeds Keras' global random state with `config.seed` first, so
        equal configs build equal models.

    Raises:
        ConfigError: an invalid config, or an encoder that refuses it (e.g.
            `encoder_trainable="top:9"` on a 6-layer encoder).
    """
    config, reasons = config.validate().for_data(data)
    for name, reason in reasons.items():
        logging.info("ModelConfig.%s=%s", name, reason)
    keras.utils.set_random_seed(config.seed)
    try:
        model = Recommender(config, data.vocab, data.item_texts, data.item_titles, rating_offset=data.rating_mean,
                            target_rule=getattr(data, "target_rule", None))
    except (ValueError, FileNotFoundError) as error:  # the encoder refuses its arguments or source
        raise ConfigError(f"ModelConfig.encoder={config.encoder!r}: {error}") from error
    model.derived_settings = reasons
    model.build(encode_catalogue=encode_catalogue)
    return model
