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
import tensorflow as tf
from keras.src.losses import loss as loss_module

from tfrec.config import ConfigError, require
from tfrec.data import schema
from tfrec.data.examples import ROW_FEATURES, USER_ROW, USER_ROWS
from tfrec.data.vocabulary import Vocabulary
from tfrec.models.behaviour_tower import BehaviourTextTower, BehaviourTower
from tfrec.models.catalogue_retrieval import CatalogueRetrieval
from tfrec.models.config import ModelConfig
from tfrec.models import influence as influence_lib
from tfrec.models.features import history_features
from tfrec.models.item_tower import ItemTower, catalogue_size_check
from tfrec.models.rating_head import RatingHead
from tfrec.models.ranking_task import RankingTask
from tfrec.models.retrieval_task import PADDING_LOGIT, RetrievalTask

PREDICT_BATCH = 256
BEHAVIOUR_TEXT_ROWS_PER_USER = 10
RETRIEVAL_TASKS = ("retrieval", "multitask")
RANKING_TASKS = ("ranking", "multitask")


def _next(features, history_key, target_key):
    """Shifts a history feature by one: the value at the behaviour each position predicts."""
    history = features[history_key]
    target = tf.cast(features[target_key], history.dtype)
    return tf.concat([history[:, 1:], target[:, None]], axis=1)


def _next_ids(features):
    return tf.cast(_next(features, schema.HISTORY_ITEM_IDS, schema.TARGET_ITEM_ID), tf.int32)


@keras.saving.register_keras_serializable(package="tfrec")
class Recommender(keras.Model):
    """A sequential recommender over a catalogue (see the module docstring).

    The constructor only creates the layers; `build()` encodes the catalogue
    texts and creates the weights (`build_model` does both).

    Args:
        config: `ModelConfig` or its dict.
        vocab: `tfrec.data.Vocabulary`: the catalogue's item ids, the user ids
            and the event names, by index.
        item_texts: list of str per catalogue index (index 0 = padding "").
        item_titles: list of str per catalogue index, the names the
            behaviour-text mode writes (default: `item_texts`).
        rating_offset: initial global bias of a rating head (the mean
            training rating).
        **kwargs: base model arguments.
    """

    def __init__(self, config, vocab, item_texts, item_titles=None, rating_offset=0.0, **kwargs):
        super().__init__(**kwargs)
        cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
        self.cfg = cfg.validate()
        catalogue_size_check(item_texts, vocab.num_items)
        self.vocab = vocab
        self.item_texts = list(item_texts)
        self.item_titles = list(item_titles) if item_titles is not None else list(item_texts)
        self.rating_offset = float(rating_offset)
        self.warm_started_from = None  # the run directory `tfrec.training.warm_start_model` started it from
        self.num_users = vocab.num_users
        self.num_events = len(vocab.events)
        self.num_rows = len(self.item_texts)
        dim = cfg.embedding_dim
        encoder = {"source": cfg.encoder, "sequence_length": cfg.sequence_length,
                   "pooling": cfg.pooling, "trainable": cfg.encoder_trainable, "cache": cfg.text_cache}
        self.item_tower = ItemTower(
            self.item_texts, embedding_dim=dim, encoder=encoder if cfg.use_text else None,
            use_item_ids=cfg.use_item_ids, id_dropout=cfg.id_dropout,
            refresh_items=cfg.text_refresh_items, text_adaptor=cfg.text_adaptor,
            text_experts=cfg.text_experts, text_dropout=cfg.dropout, seed=cfg.seed,
            name="item_tower")
        if cfg.behaviour_text:
            self.behaviour_tower = BehaviourTextTower(
                self.item_titles, embedding_dim=dim,
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
        uniform = np.full(self.num_rows, -np.log(max(self.num_rows - 1, 1)), np.float32)
        self.item_log_probability = keras.Variable(uniform, trainable=False, name="item_log_probability")
        self.trained_items = keras.Variable(np.ones(self.num_rows, np.float32), trainable=False,
                                            name="trained_items")

    @property
    def has_retrieval(self) -> bool:
        """Whether the model has a retrieval task (ranks the catalogue)."""
        return self.retrieval_task is not None

    @property
    def has_ranking(self) -> bool:
        """Whether the model has a ranking task (scores given candidates)."""
        return self.ranking_task is not None

    @property
    def item_ids(self) -> list:
        """Catalogue item ids by index, `[0] == ""`."""
        return self.vocab.item_ids

    @property
    def default_event(self) -> int:
        """Event index given to history items without one: the only event type, if there is one."""
        return 1 if self.num_events == 2 else 0

    # ----- construction -----

    def build(self, input_shape=None, encode_catalogue=True):
        """Encodes the catalogue texts and creates every weight (input shapes are not needed).

        `encode_catalogue=False` leaves a frozen encoder's text vectors empty, for weights loaded or copied
        next (`ItemTower.build`).
        """
        if self.built:
            return
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
                _next(features, schema.HISTORY_TIMESTAMPS, schema.TARGET_TIMESTAMP), tf.int64)
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
        """bool `[B, N]`: positions whose next-item prediction counts in the loss."""
        ids = tf.cast(features[schema.HISTORY_ITEM_IDS], tf.int32)
        valid = tf.logical_and(ids > 0, next_ids > 0)
        if training and self.cfg.sequence_training and not self.cfg.behaviour_text:
            return valid
        last = tf.one_hot(tf.shape(ids)[1] - 1, tf.shape(ids)[1], on_value=True, off_value=False)
        return tf.logical_and(valid, last[None, :])

    def _ranking_losses(self, contexts, inputs, next_ids, positions, catalogue, features, training):
        def head(candidates):
            return self._ranking_scores(contexts, inputs, candidates, catalogue, features, training)

        if self.ranking_task.target == "rating":
            ratings = tf.cast(_next(features, schema.HISTORY_RATINGS, schema.TARGET_RATING), tf.float32)
            losses = self.ranking_task(head(next_ids), labels=ratings)
            return tf.boolean_mask(losses, tf.logical_and(positions, ratings > 0))
        negatives = tf.random.uniform(tf.shape(next_ids), 1, self.num_rows, dtype=tf.int32)
        losses = self.ranking_task(head(next_ids), negative_scores=head(negatives))
        return tf.boolean_mask(losses, positions)

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
            losses["ranking"] = _safe_mean(self._ranking_losses(
                contexts, inputs, next_ids, positions, catalogue, features, training))
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

    # ----- training data -----

    def adapt(self, examples):
        """Sets the training-data state of the softmax from the training examples.

        The item sampling probabilities (logQ correction) follow the targets'
        frequencies, and the items that occur nowhere in `examples` (e.g. cold
        items held out) are no full-softmax negatives and are embedded from
        their text and `untrained_id_vector` (`refresh_catalogue`), unless the
        model was warm-started and learnt them before: a refresh fits on the
        logs its model never trained on, and the items they do not name keep
        their trained vectors.
        `Trainer.fit` calls it.

        Args:
            examples: dict of numpy arrays keyed by schema feature names, or an
                unbatched `tf.data.Dataset` of such examples (read in one pass,
                as Keras preprocessing layers adapt).
        """
        counts = np.zeros(self.num_rows, np.float64)
        seen = np.zeros(self.num_rows, np.float32)
        for batch in _example_columns(examples, (schema.TARGET_ITEM_ID, schema.HISTORY_ITEM_IDS)):
            targets = np.asarray(batch[schema.TARGET_ITEM_ID])
            counts += np.bincount(targets, minlength=self.num_rows)[:self.num_rows]
            seen[targets] = 1.0
            seen[np.asarray(batch[schema.HISTORY_ITEM_IDS]).ravel()] = 1.0
        counts[0] = 0
        self.item_log_probability.assign(np.log((counts + 1.0) / (counts + 1.0).sum()).astype(np.float32))
        seen[0] = 0.0
        if self.warm_started_from:
            seen = np.maximum(seen, self.trained_items.numpy())
        self.trained_items.assign(seen)

    def train_examples(self, examples):
        """Selects the training rows this model learns from best (no state changes).

        With `sequence_training`, keeps for each user the rows whose history
        windows tile the user's sequence without overlap (the user's last row,
        then every `history_length`-th row before it); each kept row trains a
        prediction at every position. In behaviour-text mode keeps at most
        `BEHAVIOUR_TEXT_ROWS_PER_USER` evenly spaced rows per user (each row
        costs a BERT pass). Otherwise returns the examples unchanged.

        Args:
            examples: dict of numpy arrays keyed by schema feature names, rows
                of a user in chronological order; or an unbatched
                `tf.data.Dataset` of examples that carry `examples.ROW_FEATURES`
                (`StreamedData.training_examples`), filtered example by example.

        Returns:
            the same kind as `examples`, a subset of the rows.
        """
        if isinstance(examples, tf.data.Dataset):
            return self._train_rows_of_stream(examples)
        users = np.asarray(examples[schema.USER_INDEX])
        if self.cfg.behaviour_text:
            keep = _spread_rows(users, BEHAVIOUR_TEXT_ROWS_PER_USER)
        elif self.cfg.sequence_training:
            keep = _window_rows(users, examples[schema.HISTORY_ITEM_IDS].shape[1])
        else:
            return examples
        return {name: np.asarray(value)[keep] for name, value in examples.items()}

    def _train_rows_of_stream(self, dataset):
        """`train_examples` of a dataset: the rule of `_window_rows` on each example's `ROW_FEATURES`."""
        require(not self.cfg.behaviour_text,
                "ModelConfig.behaviour_text=True picks rows from all of a user's examples at once: it needs "
                "examples in memory, not a tfrecord: source")
        spec = dataset.element_spec
        require(all(name in spec for name in ROW_FEATURES),
                f"the training examples lack {sorted(ROW_FEATURES)}: convert the data again with this tfrec")
        if self.cfg.sequence_training:
            window = spec[schema.HISTORY_ITEM_IDS].shape[-1]
            dataset = dataset.filter(lambda e: (e[USER_ROWS] - 1 - e[USER_ROW]) % window == 0)
        return dataset.map(lambda e: {name: value for name, value in e.items() if name not in ROW_FEATURES})

    # ----- inference -----

    def refresh_catalogue(self):
        """Recomputes the stored catalogue embeddings from the current weights.

        Inference reads item vectors from this store (`self.catalogue`);
        `predict`, `score_catalogue` and `predict_target` refresh it
        themselves, `recommend` does not (call this after changing the
        weights). Items that no training example held (cold items) are
        embedded from their text and `untrained_id_vector`: their own id
        embeddings never trained.
        """
        self.catalogue.update_candidates(self.item_tower.catalogue(training=False, id_mask=self.trained_items,
                                                                   untrained_id=self.untrained_id_vector()))

    def item_embeddings(self, item_ids):
        """Stored catalogue embeddings of int32 indices, `item_ids.shape + [D]`."""
        return self.catalogue.gather(item_ids)

    def text_item_embeddings(self, texts):
        """Embeddings of items from their text (new / cold items), `[B, D]`, with
        `untrained_id_vector` in place of an id embedding of their own."""
        return self.item_tower.text_item_embeddings(texts, self.untrained_id_vector())

    def untrained_id_vector(self):
        """The id vector of items whose own never trained (new or cold items): the trained id
        embeddings averaged by how often each item was a target in the examples `adapt` last
        read, the id vector a target has on average (None without item ids or text; zeros
        before `adapt`). Text alone would leave new items without the share of the score ids
        carry; a uniform average is the typical unpopular item's.

        Example:
            >>> model.untrained_id_vector().shape
            TensorShape([64])
        """
        if not self.item_tower.use_item_ids or self.item_tower.text_encoder is None:
            return None
        # item_log_probability is log((count + 1) / total) and row 0 never counts, so
        # exp(row - row 0) - 1 gives the counts back without the add-one smoothing.
        counts = tf.exp(self.item_log_probability - self.item_log_probability[0]) - 1.0
        weights = tf.maximum(counts, 0.0) * self.trained_items
        weights = weights / tf.maximum(tf.reduce_sum(weights), 1e-12)
        return tf.linalg.matvec(self.item_tower.id_embedding.embeddings, weights, transpose_a=True)

    def query_embeddings(self, features, history_vectors=None):
        """L2-normalised query vectors `[B, D]` for the schema history features
        (`history_vectors`: optional `[B, N, D]` in place of the history's item embeddings)."""
        contexts, _ = self._contexts(features, self.catalogue.candidate_embeddings, training=False,
                                     history_vectors=history_vectors)
        return self._queries(contexts, features)[:, -1, :]

    def text_query_embeddings(self, texts):
        """Behaviour-text mode: query vectors `[B, D]` from verbalised histories."""
        if not self.cfg.behaviour_text:
            raise ValueError("text_query_embeddings needs a model built with behaviour_text=True")
        contexts = self.behaviour_tower.encode_texts(texts)
        return tf.math.l2_normalize(self.query_projection(contexts), axis=-1)

    def score(self, features, history_vectors=None):
        """Ranking prediction for `features[TARGET_ITEM_ID]` after the history, `[B]`:
        the predicted rating, or the click probability."""
        if not self.has_ranking:
            raise ValueError("score needs a ranking or multitask model")
        catalogue = self.catalogue.candidate_embeddings
        contexts, inputs = self._contexts(features, catalogue, training=False, history_vectors=history_vectors)
        raw = self._ranking_scores(contexts, inputs, _next_ids(features), catalogue, features, False)[:, -1]
        return self.ranking_task.predictions(raw)

    def recommend(self, histories, k=10, exclude_seen=True, ratings=None, timestamps=None, events=None,
                  now=None, user_ids=None):
        """The top-k catalogue items after each history, by item id.

        Answers what the exported `recommend` signature answers for the same
        request (`recommend_in_context` when any context is given).

        Args:
            histories: list of lists of item ids (str), most recent last.
            k: items per history, 1 <= k <= catalogue size.
            exclude_seen: never recommend an item of the history.
            ratings, timestamps, events: optional lists aligned with each
                history (float ratings, int Unix seconds, event names).
            now: optional list of request times (int Unix seconds), one per history.
            user_ids: optional list of user ids (an id unseen in training is a new user).

        Returns:
            (item_ids: np.ndarray of str `[B, k]`, scores: np.ndarray float32 `[B, k]`).

        Raises:
            ValueError: unknown item ids or events, bad `k` or misaligned context.
        """
        if not self.has_retrieval:
            raise ValueError("recommend needs a retrieval or multitask model")
        request = _Request(self.vocab, histories, ratings, timestamps, events, now, user_ids)
        if not 1 <= k <= self.vocab.num_items:
            raise ValueError(f"k={k}: expected 1 <= k <= {self.vocab.num_items} (the catalogue size)")
        features = history_features(request.indices, context=request.context, default_event=self.default_event)
        scores, indices = self.catalogue.top_k(self.query_embeddings(features), k,
                                               exclude=request.indices if exclude_seen else None)
        scores, indices = scores.numpy(), indices.numpy()
        if not np.isfinite(scores).all():
            raise ValueError(f"k={k} exceeds the number of catalogue items left after excluding the history")
        return np.asarray(self.vocab.item_ids, dtype=object)[indices], scores

    def explain(self, histories, item_ids, method="occlusion", steps=16, ratings=None, timestamps=None,
                events=None, now=None, user_ids=None):
        """How much each behaviour of each history moves each candidate's score.

        The score is the one the model ranks by (`tfrec.models.influence`):
        a positive influence means the behaviour raised the candidate's score.

        Args:
            histories: list of non-empty lists of item ids (str), most recent last.
            item_ids: the candidates to explain, one list of K item ids per
                history (e.g. the ids `recommend` returned).
            method: "occlusion" (the score without the behaviour) or
                "integrated_gradients" (over the behaviour's embedding).
            steps: integrated-gradients path points.
            ratings, timestamps, events, now, user_ids: the context, as `recommend`.

        Returns:
            (influence: np.ndarray float32 `[B, K, L]`, column l is the
            behaviour `histories[b][l]`, 0 past its history's end;
            scores: np.ndarray float32 `[B, K]`).

        Raises:
            ValueError: an empty history, unknown items or events, candidate
                lists that are not one of the same length per history, or an
                unknown method.

        Example:

        >>> influence, scores = model.explain([["i1", "i7", "i3"]], [["i9", "i4"]])
        >>> influence.shape
        (1, 2, 3)
        """
        if method not in influence_lib.METHODS:
            raise ValueError(f"method={method!r}: expected one of {influence_lib.METHODS}")
        request = _Request(self.vocab, histories, ratings, timestamps, events, now, user_ids)
        empty = [row for row, history in enumerate(histories) if not any(history)]
        if empty:
            raise ValueError(f"histories[{empty[0]}] is empty: there is no behaviour to explain")
        if (isinstance(item_ids, (str, bytes)) or len(item_ids) != len(histories)
                or any(isinstance(row, (str, bytes)) or not row or len(row) != len(item_ids[0]) for row in item_ids)):
            raise ValueError(f"item_ids: expected one non-empty list of candidate item ids per history "
                             f"({len(histories)}), all of the same length")
        if any(str(i) == "" for row in item_ids for i in row):
            raise ValueError("item_ids: a candidate is the padding id \"\"; expected catalogue item ids")
        candidates = tf.constant(_Request._known(self.vocab.item_index, [[str(i) for i in row] for row in item_ids],
                                                 "candidate item ids"), tf.int32)
        if method == "occlusion":
            influence, scores = influence_lib.occlusion_influence(self, request.indices, candidates, request.context)
        else:
            influence, scores = influence_lib.integrated_gradients(self, request.indices, candidates,
                                                                   request.context, steps)
        influence, width = influence.numpy(), request.indices.shape[1]
        aligned = np.zeros_like(influence)
        for row, history in enumerate(histories):
            aligned[row, :, :len(history)] = influence[row, :, width - len(history):]
        return aligned, scores.numpy()

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

    def predict_target(self, features):
        """`score` over numpy feature dicts, in batches: numpy `[B]`."""
        self.refresh_catalogue()
        return np.concatenate([self._score_targets(batch).numpy() for batch in _batches(features)], axis=0)

    @tf.function(reduce_retracing=True)
    def _score_batch(self, features):
        return self.catalogue.scores(self.query_embeddings(features))

    @tf.function(reduce_retracing=True)
    def _score_targets(self, features):
        return self.score(features)

    def get_config(self):
        return {
            "config": self.cfg.to_dict(),
            "vocab": self.vocab.to_json(),
            "item_texts": self.item_texts,
            "item_titles": self.item_titles,
            "rating_offset": self.rating_offset,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["vocab"] = Vocabulary.from_json(config["vocab"])
        return cls(**config)


class _Request:
    """A `recommend` request as padded catalogue indices and checked context tensors."""

    def __init__(self, vocab, histories, ratings, timestamps, events, now, user_ids):
        if isinstance(histories, (str, bytes)) or not all(isinstance(h, (list, tuple)) for h in histories):
            raise ValueError("histories: expected a list of lists of item ids (str)")
        if not histories:
            raise ValueError("histories: expected at least one history")
        width = max([len(h) for h in histories] + [1])
        rows = [[""] * (width - len(h)) + [str(i) for i in h] for h in histories]
        self.indices = self._known(vocab.item_index, rows, "item ids in history")
        context = {}
        if ratings is not None:
            context["ratings"] = tf.constant(self._aligned(ratings, histories, width, 0.0, "ratings"), tf.float32)
        if timestamps is not None:
            context["timestamps"] = tf.constant(self._aligned(timestamps, histories, width, 0, "timestamps"),
                                                tf.int64)
        if events is not None:
            named = self._aligned(events, histories, width, "", "events")
            context["events"] = tf.constant(self._known(vocab.event_index, named, "events"))
        if now is not None:
            context["now"] = tf.constant(self._per_row(now, histories, "now"), tf.int64)
        if user_ids is not None:
            context["users"] = tf.constant(vocab.user_index(self._per_row(user_ids, histories, "user_ids")))
        self.context = context or None
        self.indices = tf.constant(self.indices, tf.int32)

    @staticmethod
    def _known(lookup, rows, what):
        """int32 indices of string rows ("" -> 0); raises ValueError naming unknown values."""
        values = np.asarray(rows, dtype=object)
        indices = lookup(values.ravel()).reshape(values.shape)
        unknown = sorted({str(v) for v in values[(indices == 0) & (values != "")]})
        if unknown:
            raise ValueError(f"unknown {what}: {unknown[:20]}")
        return indices

    @staticmethod
    def _aligned(values, histories, width, fill, what):
        if len(values) != len(histories) or any(len(v) != len(h) for v, h in zip(values, histories)):
            raise ValueError(f"{what}: expected one list per history, aligned with its items")
        return [[fill] * (width - len(v)) + list(v) for v in values]

    @staticmethod
    def _per_row(values, histories, what):
        if len(values) != len(histories):
            raise ValueError(f"{what}: expected one value per history ({len(histories)}), got {len(values)}")
        return list(values)


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


def _batches(features, size=PREDICT_BATCH):
    count = len(next(iter(features.values())))
    for start in range(0, count, size):
        yield {name: tf.convert_to_tensor(np.asarray(value)[start:start + size])
               for name, value in features.items()}


def _example_columns(examples, names, batch_size=65536):
    """`examples` (a dict of arrays, or an unbatched dataset) as dicts of numpy arrays of `names`."""
    if not isinstance(examples, tf.data.Dataset):
        yield examples
        return
    selected = examples.map(lambda e: {name: e[name] for name in names})
    yield from selected.batch(batch_size).as_numpy_iterator()


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
        a built, uncompiled `Recommender`. Seeds Keras' global random state
        with `config.seed` first, so equal configs build equal models.

    Raises:
        ConfigError: an invalid config, or an encoder that refuses it (e.g.
            `encoder_trainable="top:9"` on a 6-layer encoder).
    """
    config.validate()
    keras.utils.set_random_seed(config.seed)
    try:
        model = Recommender(config, data.vocab, data.item_texts, data.item_titles, rating_offset=data.rating_mean)
    except (ValueError, FileNotFoundError) as error:  # the encoder refuses its arguments or source
        raise ConfigError(f"ModelConfig.encoder={config.encoder!r}: {error}") from error
    model.build(encode_catalogue=encode_catalogue)
    return model
