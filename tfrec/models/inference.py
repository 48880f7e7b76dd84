"""The in-process inference API of a `Recommender`: answers by item id, and batch scoring.

`recommend`, `explain` and `score_catalogue`/`predict_target` run in the
Python process, over the item vectors `refresh_catalogue` stores (items
that never trained take `untrained_id_vector`). Requests name items by id: they are padded by the rule of
`tfrec.request_format` and encoded by the model's `RequestEncoder`, the
layer the exported signatures encode theirs with, so an in-process answer is
the served one by construction.

History item ids the catalogue does not know are skipped (the rest of the
history kept) and reported in the answer's `skipped_items`, unless
`unknown_items="error"`; histories longer than the model's window are read
from their newest `RequestEncoder.max_history_length` behaviours.

Example:

>>> item_ids, scores = model.recommend([["i1", "i7", "i3"]], k=5)
>>> model.recommend([["i1", "a new sku"]], k=5).skipped_items
[['a new sku']]
>>> influence, scores = model.explain([["i1", "i7", "i3"]], [["i9", "i4"]])
"""

import numpy as np
import tensorflow as tf

from tfrec.data import schema
from tfrec.models import influence as influence_lib
from tfrec.models import request_encoder as encoder_lib
from tfrec.models.retrieval_task import PADDING_LOGIT
from tfrec.request_format import PADDING_ID, nfc, pad, padded_width

PREDICT_BATCH = 256


class Answer(tuple):
    """An in-process answer: the pair it always was (`item_ids, scores = ...`), plus `skipped_items`,
    one list per history of its item ids the catalogue did not know (skipped, in request order).

    Example:

    >>> answer = Answer((["i3"], [0.5]), skipped_items=[["new"]])
    >>> ids, scores = answer
    >>> answer.skipped_items
    [['new']]
    """

    def __new__(cls, values, skipped_items):
        answer = super().__new__(cls, values)
        answer.skipped_items = skipped_items
        return answer


def skipped_lists(skipped_items) -> list:
    """The `skipped_items` string tensor or array `[B, S]` (padded with "") as one list of str per row."""
    rows = np.asarray(skipped_items)
    return [[v.decode() if isinstance(v, bytes) else str(v) for v in row if v not in (b"", "")] for row in rows]


def request_inputs(histories, ratings=None, timestamps=None, events=None, now=None, user_ids=None) -> dict:
    """The `RequestEncoder` inputs of an in-process request: ragged Python lists, checked and left-padded.

    Raises:
        ValueError: no histories, or context not aligned with them.
    """
    if isinstance(histories, (str, bytes)) or not all(isinstance(h, (list, tuple)) for h in histories):
        raise ValueError("histories: expected a list of lists of item ids (str)")
    if not histories:
        raise ValueError("histories: expected at least one history")
    width = padded_width(histories)
    inputs = {encoder_lib.HISTORY: tf.constant(pad([[nfc(str(i)) for i in h] for h in histories]), tf.string)}
    for name, values, fill, dtype, what in (
            (encoder_lib.HISTORY_RATINGS, ratings, 0.0, tf.float32, "ratings"),
            (encoder_lib.HISTORY_TIMESTAMPS, timestamps, 0, tf.int64, "timestamps"),
            (encoder_lib.HISTORY_EVENTS, events, PADDING_ID, tf.string, "events")):
        if values is not None:
            if (isinstance(values, (str, bytes)) or len(values) != len(histories)
                    or any(not isinstance(v, (list, tuple)) or len(v) != len(h) for v, h in zip(values, histories))):
                raise ValueError(f"{what}: expected one list per history, aligned with its items")
            inputs[name] = _constant(pad(values, fill, width), dtype, what)
    for name, values, dtype, what in ((encoder_lib.TIMESTAMP, now, tf.int64, "now"),
                                      (encoder_lib.USER_ID, user_ids, tf.string, "user_ids")):
        if values is not None:
            if len(values) != len(histories):
                raise ValueError(f"{what}: expected one value per history ({len(histories)}), got {len(values)}")
            inputs[name] = _constant(list(values), dtype, what)
    return inputs


def _constant(values, dtype, what):
    """`tf.constant(values, dtype)` (text in NFC, `request_format.nfc`), or ValueError naming `what` when a
    value is not of that kind."""
    if dtype == tf.string:
        values = [list(map(_nfc, row)) if isinstance(row, list) else _nfc(row) for row in values]
    try:
        return tf.constant(values, dtype)
    except (TypeError, ValueError):
        kind = "str" if dtype == tf.string else dtype.name
        raise ValueError(f"{what}: expected {kind} values, got {values!r:.200}") from None


def _nfc(value):
    """`value` in NFC when it is a str; anything else as it is, for `tf.constant` to refuse by name."""
    return nfc(value) if isinstance(value, str) else value


def _int32_k(k):
    """`k` (an int or one per history) as an int32 tensor; ValueError naming it when a value is no int32."""
    values = np.asarray(k)
    if values.dtype.kind not in "iu" or (values.size and (values.min() < -2**31 or values.max() >= 2**31)):
        raise ValueError(f"k={k!r}: expected an int, or one per history, of at most {2**31 - 1}")
    return tf.constant(values, tf.int32)


def _check_candidates(histories, item_ids):
    """Raises ValueError unless `item_ids` holds one non-empty list of the same length per history, no padding."""
    if (isinstance(item_ids, (str, bytes)) or len(item_ids) != len(histories)
            or any(isinstance(row, (str, bytes)) or not row or len(row) != len(item_ids[0]) for row in item_ids)):
        raise ValueError(f"item_ids: expected one non-empty list of candidate item ids per history "
                         f"({len(histories)}), all of the same length")
    if any(str(i) == PADDING_ID for row in item_ids for i in row):
        raise ValueError("item_ids: a candidate is the padding id \"\"; expected catalogue item ids")


def _batches(features, size=PREDICT_BATCH):
    count = len(next(iter(features.values())))
    for start in range(0, count, size):
        yield {name: tf.convert_to_tensor(np.asarray(value)[start:start + size])
               for name, value in features.items()}


class RecommenderInference:
    """In-process inference for `Recommender` (a mixin: it reads the model's
    towers, `request_encoder`, `catalogue`, `query_embeddings` and `score`)."""

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

    def text_query_embeddings(self, texts):
        """Behaviour-text mode: query vectors `[B, D]` from verbalised histories."""
        if not self.cfg.behaviour_text:
            raise ValueError("text_query_embeddings needs a model built with behaviour_text=True")
        contexts = self.behaviour_tower.encode_texts(texts)
        return tf.math.l2_normalize(self.query_projection(contexts), axis=-1)

    def recommend(self, histories, k=10, exclude_seen=True, ratings=None, timestamps=None, events=None,
                  now=None, user_ids=None, unknown_items=None):
        """The top-k catalogue items after each history, by item id.

        Answers what the exported `recommend` signature answers for the same
        request (`recommend_in_context` when any context is given).

        Args:
            histories: list of lists of item ids (str), most recent last.
            k: items per history, 1 <= k <= catalogue size: one int, or a
                list of one per history.
            exclude_seen: never recommend an item of the history (the whole
                history, also behaviours older than the model's window); with
                target events (`DataConfig.target_events`) and `events` given,
                only the items of target behaviours (bought, not only clicked).
            ratings, timestamps, events: optional lists aligned with each
                history (float ratings, int Unix seconds, event names).
            now: optional list of request times (int Unix seconds), one per history.
            user_ids: optional list of user ids (an id unseen in training is a new user).
            unknown_items: "skip" or "error" for history item ids the
                catalogue does not know (default: the encoder's, "skip").

        Returns:
            `Answer` `(item_ids: np.ndarray of str [B, max k], scores:
            np.ndarray float32 [B, max k])`, a row with a smaller `k` padded
            with "" and -inf; `.skipped_items`: the unknown ids skipped.

        Raises:
            ValueError: unknown item ids (with `unknown_items="error"`) or
                events, bad `k` or misaligned context.
        """
        if not self.has_retrieval:
            raise ValueError("recommend needs a retrieval or multitask model")
        inputs = request_inputs(histories, ratings, timestamps, events, now, user_ids)
        request = self.request_encoder(dict(inputs, **{encoder_lib.K: _int32_k(k)}),
                                       unknown_items=unknown_items)
        scores, indices = encoder_lib.checked_top_k(
            self.catalogue, self.query_embeddings(request["features"]), request["k"],
            exclude=self.seen_to_exclude(request) if exclude_seen else None, bonus=self.prior_scores(request["features"]))
        return Answer((np.asarray(self.vocab.item_ids, dtype=object)[indices.numpy()], scores.numpy()),
                      skipped_lists(request["skipped_items"]))

    def explain(self, histories, item_ids, method="occlusion", steps=16, ratings=None, timestamps=None,
                events=None, now=None, user_ids=None, unknown_items=None):
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
            ratings, timestamps, events, now, user_ids, unknown_items: as `recommend`.

        Returns:
            `Answer` `(influence: np.ndarray float32 [B, K, L]`, column l is
            the behaviour `histories[b][l]`, 0 past its history's end and for
            a skipped item or one older than the model's window;
            `scores: np.ndarray float32 [B, K])`; `.skipped_items` as `recommend`.

        Raises:
            ValueError: a history with no known behaviour, unknown items (with
                `unknown_items="error"`) or events, candidate lists that are
                not one of the same length per history, an unknown method, or
                a request costing more than `influence.MAX_EXPLAIN_COST`.

        Example:

        >>> influence, scores = model.explain([["i1", "i7", "i3"]], [["i9", "i4"]])
        >>> influence.shape
        (1, 2, 3)
        """
        if method not in influence_lib.METHODS:
            raise ValueError(f"method={method!r}: expected one of {influence_lib.METHODS}")
        inputs = request_inputs(histories, ratings, timestamps, events, now, user_ids)
        empty = [row for row, history in enumerate(histories) if not any(history)]
        if empty:
            raise ValueError(f"histories[{empty[0]}] is empty: there is no behaviour to explain")
        _check_candidates(histories, item_ids)
        inputs[encoder_lib.CANDIDATES] = tf.constant([[nfc(str(i)) for i in row] for row in item_ids], tf.string)
        request = self.request_encoder(inputs, unknown_items=unknown_items)
        empty = np.flatnonzero(~np.any(request["history"].numpy() > 0, axis=1))
        if empty.size:
            raise ValueError(f"histories[{empty[0]}] holds no item of the catalogue: there is no behaviour to "
                             "explain")
        influence_lib.checked_cost(self, request["model_history"], request["candidates"], method, steps)
        arguments = (self, request["model_history"], request["candidates"], request["context"])
        if method == "occlusion":
            influence, scores = influence_lib.occlusion_influence(*arguments)
        else:
            influence, scores = influence_lib.integrated_gradients(*arguments, steps)
        influence = encoder_lib.request_columns(influence, request["positions"]).numpy()
        width, aligned = influence.shape[2], np.zeros_like(influence)
        for row, history in enumerate(histories):
            aligned[row, :, :len(history)] = influence[row, :, width - len(history):]
        return Answer((aligned, scores.numpy()), skipped_lists(request["skipped_items"]))

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

    def prior_scores(self, features):
        """The transition prior's term of every catalogue row after each history, `[B, num_rows]`
        (`TransitionPrior.catalogue_scores`); None for a model without a prior."""
        if self.transition_prior is None:
            return None
        return self.transition_prior.catalogue_scores(features[schema.HISTORY_ITEM_IDS])

    @tf.function(reduce_retracing=True)
    def _score_batch(self, features):
        scores = self.catalogue.scores(self.query_embeddings(features))
        prior = self.prior_scores(features)
        return scores if prior is None else scores + prior

    @tf.function(reduce_retracing=True)
    def _score_targets(self, features):
        return self.score(features)
