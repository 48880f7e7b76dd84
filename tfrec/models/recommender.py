"""Sequential recommenders: retrieval, ranking and multitask Keras models.

All three share one structure: an `ItemTower` embeds the catalogue (text through
BERT and/or ids); a `BehaviourTower` reads the user's history as a sequence of
those item embeddings and gives, at every position, a causal summary of the
behaviours so far (or a `BehaviourTextTower` encodes the verbalised history);
task heads score the next item:

- retrieval (`RetrievalModel`): cosine(query, item) / temperature, trained with
  a full-catalogue or in-batch softmax (`RetrievalTask`);
- ranking (`RankingModel`): a predicted rating (MSE) or click probability
  (binary cross-entropy against sampled negatives) from a `RatingHead`;
- multitask (`MultitaskModel`): both heads on the shared towers, losses weighted
  by `retrieval_weight` and `ranking_weight`.

Models take the schema feature dicts of `tfrec.data.build_examples` and compute
their own loss, so `model.compile(optimizer)` + `model.fit(dataset)` train them.
A history window of N behaviours plus its target carries N next-item
predictions; with `sequence_training` the training loss uses all of them and
`train_examples` keeps one non-overlapping window per user stretch instead of
every overlapping per-target example (SASRec-style). Evaluation losses and
predictions use the last position (the example's target) only.

Example:

>>> cfg = ModelConfig(task="retrieval", encoder="tiny", embedding_dim=32)
>>> model = build_model(cfg, vocab, item_texts)
>>> model.compile(optimizer=keras.optimizers.AdamW(1e-3))
>>> model.fit(data.to_tf_dataset(model.train_examples(examples["train"]), 64))
>>> scores = model.score_catalogue(examples["test"])   # [n, num_items + 1]
"""

import re

import keras
import keras_rs
import numpy as np
import tensorflow as tf

from tfrec.data import schema
from tfrec.models.behaviour_tower import BehaviourTextTower, BehaviourTower
from tfrec.models.config import ModelConfig
from tfrec.models.item_tower import ItemTower, catalogue_size_check
from tfrec.models.rating_head import RatingHead
from tfrec.models.retrieval_task import PADDING_LOGIT, RetrievalTask

PREDICT_BATCH = 256
BEHAVIOUR_TEXT_ROWS_PER_USER = 10
CLICK_OFFSET = 0.0
RATING_OFFSET = 3.5
TITLE_PATTERN = re.compile(r"^(.*?\(\d{4}\))")


def title_of(text):
    """The title part of an item text ("Heat (1995). Action. ..." -> "Heat (1995)")."""
    match = TITLE_PATTERN.match(text)
    return match.group(1) if match else text.split(". ")[0]


def _next(features, history_key, target_key):
    """Shifts a history feature by one: the value at the behaviour each position predicts."""
    history = features[history_key]
    target = tf.cast(features[target_key], history.dtype)
    return tf.concat([history[:, 1:], target[:, None]], axis=1)


def _next_ids(features):
    return tf.cast(_next(features, schema.HISTORY_ITEM_IDS, schema.TARGET_ITEM_ID), tf.int32)


class Recommender(keras.Model):
    """Shared towers and training logic; use the task subclasses.

    Args:
        config: `ModelConfig` or its dict.
        item_texts: list of str per catalogue index (index 0 = padding "").
        num_users: user vocabulary size (without padding).
        num_events: event vocabulary size including padding (0 = no events).
        **kwargs: base model arguments.
    """

    TASK = None

    def __init__(self, config, item_texts, num_users=0, num_events=0, **kwargs):
        super().__init__(**kwargs)
        cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
        cfg.validate()
        if cfg.task != self.TASK:
            raise ValueError(f"{type(self).__name__} needs task={self.TASK!r}, got {cfg.task!r}")
        self.cfg = cfg
        self.item_texts = list(item_texts)
        self.num_users = num_users
        self.num_events = num_events
        self.num_rows = len(self.item_texts)
        dim = cfg.embedding_dim
        encoder = {"source": cfg.encoder, "sequence_length": cfg.sequence_length,
                   "pooling": cfg.pooling, "trainable": cfg.encoder_trainable}
        self.item_tower = ItemTower(
            self.item_texts, embedding_dim=dim, encoder=encoder if cfg.use_text else None,
            use_item_ids=cfg.use_item_ids, id_dropout=cfg.id_dropout,
            refresh_items=cfg.text_refresh_items, seed=cfg.seed, name="item_tower")
        if cfg.behaviour_text:
            self.behaviour_tower = BehaviourTextTower(
                [title_of(text) for text in self.item_texts], embedding_dim=dim,
                encoder=dict(encoder, sequence_length=cfg.behaviour_text_length),
                max_items=cfg.behaviour_text_items, name="behaviour_text_tower")
        else:
            self.behaviour_tower = BehaviourTower(
                dim, cfg.history_encoder, cfg.history_layers, cfg.history_heads, cfg.dropout,
                num_events=num_events, use_ratings=cfg.use_ratings, use_time_gaps=cfg.use_time_gaps,
                name="behaviour_tower")
        self.item_dropout = keras.layers.Dropout(cfg.dropout)
        self.query_projection = keras.layers.Dense(dim, name="query_projection")
        if cfg.use_user_ids:
            self.user_embedding = keras.layers.Embedding(num_users + 1, dim, name="user_embedding")
        self.has_retrieval = self.TASK in ("retrieval", "multitask")
        self.has_ranking = self.TASK in ("ranking", "multitask")
        if self.has_retrieval:
            self.retrieval_task = RetrievalTask(
                cfg.softmax, cfg.temperature, cfg.logq_correction, cfg.remove_accidental_hits,
                cfg.hard_negatives, name="retrieval_task")
            self.retrieval = keras_rs.layers.BruteForceRetrieval(
                candidate_embeddings=np.zeros((self.num_rows, dim), np.float32), k=10, name="retrieval")
            self.retrieval_loss_tracker = keras.metrics.Mean(name="retrieval_loss")
        if self.has_ranking:
            click = cfg.ranking_target == "click"
            self.rating_head = RatingHead(
                self.num_rows, dim, num_users if cfg.use_user_ids else 0, cfg.dcn_layers, cfg.dropout,
                offset=CLICK_OFFSET if click else RATING_OFFSET, num_heads=cfg.history_heads,
                name="rating_head")
            self.ranking_loss_tracker = keras.metrics.Mean(name="ranking_loss")
        self.catalogue_vectors = keras.Variable(
            np.zeros((self.num_rows, dim), np.float32), trainable=False, name="catalogue_vectors")
        uniform = np.full(self.num_rows, -np.log(max(self.num_rows - 1, 1)), np.float32)
        self.item_log_probability = keras.Variable(uniform, trainable=False, name="item_log_probability")
        self.trained_items = keras.Variable(np.ones(self.num_rows, np.float32), trainable=False,
                                            name="trained_items")
        self._create_variables()

    # ----- construction -----

    def build(self, input_shape=None):
        # Variables are created in the constructor by `_create_variables`.
        self.built = True

    def _create_variables(self):
        """Runs one eager forward pass on a dummy batch so every variable exists."""
        dummy = {
            schema.USER_INDEX: np.ones([2], np.int32),
            schema.HISTORY_ITEM_IDS: np.array([[0, 1], [1, 1]], np.int32) % self.num_rows,
            schema.HISTORY_RATINGS: np.ones([2, 2], np.float32),
            schema.HISTORY_EVENTS: np.ones([2, 2], np.int32),
            schema.HISTORY_TIMESTAMPS: np.ones([2, 2], np.int64),
            schema.TARGET_ITEM_ID: np.ones([2], np.int32) % self.num_rows,
            schema.TARGET_RATING: np.ones([2], np.float32),
            schema.TARGET_EVENT: np.ones([2], np.int32),
            schema.TARGET_TIMESTAMP: np.ones([2], np.int64),
            schema.LABEL: np.ones([2], np.float32),
        }
        self(dummy, training=False)
        self.refresh_catalogue()

    # ----- shared pieces -----

    def _history_inputs(self, features, catalogue, training):
        ids = tf.cast(features[schema.HISTORY_ITEM_IDS], tf.int32)
        inputs = {"item_ids": ids,
                  "item_vectors": self.item_dropout(tf.gather(catalogue, ids), training=training)}
        if self.cfg.use_ratings or self.has_ranking or self.cfg.behaviour_text:
            inputs["ratings"] = tf.cast(features[schema.HISTORY_RATINGS], tf.float32)
        if self.num_events > 1:
            inputs["events"] = tf.cast(features[schema.HISTORY_EVENTS], tf.int32)
        if self.cfg.use_time_gaps:
            inputs["timestamps"] = tf.cast(features[schema.HISTORY_TIMESTAMPS], tf.int64)
            inputs["next_timestamps"] = tf.cast(
                _next(features, schema.HISTORY_TIMESTAMPS, schema.TARGET_TIMESTAMP), tf.int64)
        return inputs

    def _contexts(self, features, catalogue, training):
        """Behaviour summaries `[B, N, D]` and the history inputs.

        In behaviour-text mode every position holds the one text summary.
        """
        inputs = self._history_inputs(features, catalogue, training)
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
        """bool `[B, N]`: positions whose next-item prediction counts in the loss."""
        ids = tf.cast(features[schema.HISTORY_ITEM_IDS], tf.int32)
        valid = tf.logical_and(ids > 0, next_ids > 0)
        if training and self.cfg.sequence_training and not self.cfg.behaviour_text:
            return valid
        last = tf.one_hot(tf.shape(ids)[1] - 1, tf.shape(ids)[1], on_value=True, off_value=False)
        return tf.logical_and(valid, last[None, :])

    def _ranking_loss(self, contexts, inputs, next_ids, positions, catalogue, features, training):
        head = lambda candidates: self._ranking_scores(  # noqa: E731
            contexts, inputs, candidates, catalogue, features, training)
        if self.cfg.ranking_target == "rating":
            ratings = tf.cast(_next(features, schema.HISTORY_RATINGS, schema.TARGET_RATING), tf.float32)
            positions = tf.logical_and(positions, ratings > 0)
            errors = tf.square(head(next_ids) - ratings)
            return tf.boolean_mask(errors, positions)
        negatives = tf.random.uniform(tf.shape(next_ids), 1, self.num_rows, dtype=tf.int32)
        positive = keras.ops.binary_crossentropy(tf.ones_like(next_ids, tf.float32), head(next_ids),
                                                 from_logits=True)
        negative = keras.ops.binary_crossentropy(tf.zeros_like(next_ids, tf.float32), head(negatives),
                                                 from_logits=True)
        return tf.boolean_mask((positive + negative) / 2.0, positions)

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

    # ----- Keras training interface -----

    def call(self, features, training=False):
        """Returns the task losses (mean over predicted positions) as a dict of scalars."""
        next_ids = _next_ids(features)
        positions = self._loss_positions(features, next_ids, training)
        catalogue = self.item_tower.catalogue(training=training, focus_ids=tf.boolean_mask(next_ids, positions))
        contexts, inputs = self._contexts(features, catalogue, training)
        losses = {}
        if self.has_retrieval:
            queries = tf.boolean_mask(self._queries(contexts, features), positions)
            targets = tf.boolean_mask(next_ids, positions)
            exclusions = None
            if self.cfg.exclude_seen:
                exclusions = tf.boolean_mask(_earlier_items(features, self.num_rows), positions)
            per_query = self.retrieval_task(queries, targets, catalogue, self.item_log_probability,
                                            self.trained_items, exclusions)
            losses["retrieval"] = _safe_mean(per_query)
        if self.has_ranking:
            losses["ranking"] = _safe_mean(self._ranking_loss(
                contexts, inputs, next_ids, positions, catalogue, features, training))
        return losses

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total = 0.0
        if self.has_retrieval:
            self.retrieval_loss_tracker.update_state(y_pred["retrieval"])
            total += self.cfg.retrieval_weight * y_pred["retrieval"]
        if self.has_ranking:
            self.ranking_loss_tracker.update_state(y_pred["ranking"])
            total += self.cfg.ranking_weight * y_pred["ranking"]
        for loss in self.losses:
            total += loss
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return total / replicas

    # ----- training data -----

    def train_examples(self, examples):
        """Selects the training rows this model learns from best.

        With `sequence_training`, keeps for each user the rows whose history
        windows tile the user's sequence without overlap (the user's last row,
        then every `history_length`-th row before it); each kept row trains a
        prediction at every position. In behaviour-text mode keeps at most
        `BEHAVIOUR_TEXT_ROWS_PER_USER` evenly spaced rows per user (each row
        costs a BERT pass). Otherwise returns the examples unchanged. Also
        sets the item sampling probabilities (logQ correction) from the
        targets' frequencies, and removes the items that occur nowhere in
        `examples` (e.g. cold items held out) from the full-softmax negatives.

        Args:
            examples: dict of numpy arrays keyed by schema feature names, rows
                of a user in chronological order.

        Returns:
            dict of numpy arrays, a subset of the rows.
        """
        targets = np.asarray(examples[schema.TARGET_ITEM_ID])
        counts = np.bincount(targets, minlength=self.num_rows)[:self.num_rows].astype(np.float64)
        counts[0] = 0
        self.item_log_probability.assign(np.log((counts + 1.0) / (counts + 1.0).sum()).astype(np.float32))
        seen = np.zeros(self.num_rows, np.float32)
        seen[targets] = 1.0
        seen[np.asarray(examples[schema.HISTORY_ITEM_IDS]).ravel()] = 1.0
        seen[0] = 0.0
        self.trained_items.assign(seen)
        users = np.asarray(examples[schema.USER_INDEX])
        if self.cfg.behaviour_text:
            keep = _spread_rows(users, BEHAVIOUR_TEXT_ROWS_PER_USER)
        elif self.cfg.sequence_training:
            keep = _window_rows(users, examples[schema.HISTORY_ITEM_IDS].shape[1])
        else:
            return examples
        return {name: np.asarray(value)[keep] for name, value in examples.items()}

    # ----- inference -----

    def refresh_catalogue(self):
        """Recomputes the stored catalogue embeddings from the current weights.

        Inference methods read item vectors from this store; `score_catalogue`
        and `predict_target` refresh it themselves, exporters call it after
        loading weights. Items that no training example held (cold items) are
        embedded from their text alone: their id embeddings never trained.
        """
        vectors = self.item_tower.catalogue(training=False, id_mask=self.trained_items)
        self.catalogue_vectors.assign(vectors)
        if self.has_retrieval:
            self.retrieval.update_candidates(vectors)

    def item_embeddings(self, item_ids):
        """Stored catalogue embeddings of int32 indices, `item_ids.shape + [D]`."""
        return tf.gather(self.catalogue_vectors, tf.cast(item_ids, tf.int32))

    def text_item_embeddings(self, texts):
        """Embeddings of items from text alone (new / cold items), `[B, D]`."""
        return self.item_tower.text_item_embeddings(texts)

    def query_embeddings(self, features):
        """L2-normalised query vectors `[B, D]` for the schema history features."""
        contexts, _ = self._contexts(features, self.catalogue_vectors, training=False)
        return self._queries(contexts, features)[:, -1, :]

    def text_query_embeddings(self, texts):
        """Behaviour-text mode: query vectors `[B, D]` from verbalised histories."""
        if not self.cfg.behaviour_text:
            raise ValueError("text_query_embeddings needs a model built with behaviour_text=True")
        contexts = self.behaviour_tower.encode_texts(texts)
        return tf.math.l2_normalize(self.query_projection(contexts), axis=-1)

    def recommend(self, features, k=10):
        """Exact top-k catalogue items not in the history.

        Scores every item with `keras_rs.layers.BruteForceRetrieval`'s scoring
        over the stored catalogue, masks padding and history items, keeps the
        k best.

        Returns:
            (scores float32 `[B, k]`, item indices int32 `[B, k]`).
        """
        if not self.has_retrieval:
            raise ValueError("recommend needs a retrieval or multitask model")
        queries = self.query_embeddings(features)
        scores = self.retrieval.compute_score(queries, self.retrieval.candidate_embeddings)
        scores = _mask_seen(scores, tf.cast(features[schema.HISTORY_ITEM_IDS], tf.int32))
        return tf.math.top_k(scores, k=k)

    def score_catalogue(self, features):
        """Scores of every catalogue index for each example, numpy `[B, num_rows]`.

        Column 0 (padding) is -1e9. History items are not masked (the ranking
        metrics exclude them).
        """
        if not self.has_retrieval:
            raise ValueError("score_catalogue needs a retrieval or multitask model")
        self.refresh_catalogue()
        scores = np.concatenate([self._score_batch(batch).numpy() for batch in _batches(features)], axis=0)
        scores[:, 0] = PADDING_LOGIT
        return scores

    def score(self, features):
        """Ranking score of `features[TARGET_ITEM_ID]` after the history, `[B]`:
        the predicted rating, or the click probability."""
        if not self.has_ranking:
            raise ValueError("score needs a ranking or multitask model")
        catalogue = self.catalogue_vectors
        contexts, inputs = self._contexts(features, catalogue, training=False)
        candidates = _next_ids(features)
        raw = self._ranking_scores(contexts, inputs, candidates, catalogue, features, False)[:, -1]
        return tf.sigmoid(raw) if self.cfg.ranking_target == "click" else raw

    def predict_target(self, features):
        """`score` over numpy feature dicts, in batches: numpy `[B]`."""
        self.refresh_catalogue()
        return np.concatenate([self._score_targets(batch).numpy() for batch in _batches(features)], axis=0)

    @tf.function(reduce_retracing=True)
    def _score_batch(self, features):
        return self.retrieval.compute_score(self.query_embeddings(features), self.retrieval.candidate_embeddings)

    @tf.function(reduce_retracing=True)
    def _score_targets(self, features):
        return self.score(features)

    def get_config(self):
        return {
            "config": self.cfg.to_dict(),
            "item_texts": self.item_texts,
            "num_users": self.num_users,
            "num_events": self.num_events,
            "name": self.name,
        }


def _safe_mean(values):
    """Mean of `values` over the whole global batch, times the number of replicas.

    Each replica holds a different number of predicted positions, so its loss
    is its own sum divided by the count summed over all replicas; `compute_loss`
    then divides by the number of replicas as Keras expects. With one replica
    this is the plain mean.
    """
    context = tf.distribute.get_replica_context()
    count = tf.cast(tf.size(values), values.dtype)
    replicas = 1
    if context is not None and context.num_replicas_in_sync > 1:
        replicas = context.num_replicas_in_sync
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(count))
    return tf.math.divide_no_nan(tf.reduce_sum(values), count) * replicas


def _earlier_items(features, num_rows):
    """float `[B, N, num_rows]`: 1 where the item occurs in the history at or before each position."""
    ids = tf.cast(features[schema.HISTORY_ITEM_IDS], tf.int32)
    return tf.minimum(tf.cumsum(tf.one_hot(ids, num_rows), axis=1), 1.0)


def _mask_seen(scores, history_ids):
    """Sets the scores of padding and of each row's history items to -1e9."""
    batch = tf.shape(history_ids)[0]
    rows = tf.repeat(tf.range(batch), tf.shape(history_ids)[1])
    indices = tf.stack([rows, tf.reshape(history_ids, [-1])], axis=1)
    seen = tf.scatter_nd(indices, tf.ones([tf.shape(indices)[0]], scores.dtype), tf.shape(scores))
    seen = tf.minimum(seen + tf.one_hot(0, tf.shape(scores)[1])[None, :], 1.0)
    return scores + seen * PADDING_LOGIT


def _batches(features, size=PREDICT_BATCH):
    count = len(next(iter(features.values())))
    for start in range(0, count, size):
        yield {name: tf.convert_to_tensor(np.asarray(value)[start:start + size])
               for name, value in features.items()}


def _window_rows(users, window):
    """Row indices: per user, the last row then every `window`-th row before it."""
    keep = []
    for user_rows in _rows_by_user(users):
        keep.extend(user_rows[::-1][::window][::-1])
    return np.sort(np.asarray(keep, np.int64))


def _spread_rows(users, per_user):
    """Row indices: per user, at most `per_user` evenly spaced rows, always the last."""
    keep = []
    for user_rows in _rows_by_user(users):
        picks = np.unique(np.linspace(len(user_rows) - 1, 0, per_user).round().astype(int))
        keep.extend(user_rows[picks])
    return np.sort(np.asarray(keep, np.int64))


def _rows_by_user(users):
    order = np.argsort(users, kind="stable")
    boundaries = np.flatnonzero(np.diff(users[order])) + 1
    return np.split(order, boundaries)


@keras.saving.register_keras_serializable(package="tfrec")
class RetrievalModel(Recommender):
    """Next-item retrieval: queries and items in one space, softmax-trained."""

    TASK = "retrieval"


@keras.saving.register_keras_serializable(package="tfrec")
class RankingModel(Recommender):
    """Rating (MSE) or click (BCE) prediction of a candidate after a history."""

    TASK = "ranking"


@keras.saving.register_keras_serializable(package="tfrec")
class MultitaskModel(Recommender):
    """Retrieval and ranking heads on shared towers, with loss weights."""

    TASK = "multitask"


MODEL_CLASSES = {cls.TASK: cls for cls in (RetrievalModel, RankingModel, MultitaskModel)}


def build_model(config, vocab, item_texts):
    """Builds the model for `config.task`.

    Args:
        config: `ModelConfig`.
        vocab: `tfrec.data.Vocabulary` (uses `num_items`, `num_users`, `events`).
        item_texts: list of str, `vocab.num_items + 1` entries, [0] == "".

    Returns:
        a `RetrievalModel`, `RankingModel` or `MultitaskModel`, not compiled.
        Seeds Keras' global random state with `config.seed` first, so equal
        configs build equal models.
    """
    config.validate()
    catalogue_size_check(item_texts, vocab.num_items)
    keras.utils.set_random_seed(config.seed)
    events = len(getattr(vocab, "events", []) or [])
    return MODEL_CLASSES[config.task](config, item_texts, num_users=vocab.num_users, num_events=events)
