"""The `tf.Module` whose functions become the SavedModel signatures.

Every signature takes string item ids or raw text: ids are mapped to indices
and checked by the model's `RequestEncoder` (the layer `Recommender.recommend`
encodes its requests with) over lookup tables initialised from the catalogue
asset files, text is tokenised
inside the graph by the model's own preprocessing (TF Text ops). Retrieval
scores the whole catalogue against a precomputed embedding matrix (brute-force
top-k in chunks, `CatalogueRetrieval.top_k`, which TF Serving can run without
extra ops), stored in float32, bfloat16 or int8 (`catalogue_dtype`).

Signatures (inputs -> outputs):

- retrieval `recommend` (= `serving_default`): `history` string [B, N] padded
  with "", `k` int32 [B] (one per row) -> `item_ids` string [B, K],
  `scores` float32 [B, K], `item_titles` string [B, K] (the catalogue's
  titles: callers need no second lookup), `skipped_items` string [B, S];
  K = max(k), a row's columns past its own k hold "" and score -inf;
  history items are never recommended.
- retrieval `recommend_from_text`: `text` string [B], `k` -> `item_ids`, `scores`, `item_titles`.
- retrieval `embed_items`: `text` string [B] -> `embeddings` float32 [B, d].
- ranking `score`: `history` string [B, N], `candidates` string [B, M] ->
  `scores` float32 [B, M], `skipped_items`.
- `explain`: `history` string [B, N], `candidates` string [B, M] ->
  `influence` float32 [B, M, N] (the candidate's score minus its score
  without that behaviour; 0 at padding, at a skipped item and before the
  model's window), `scores` float32 [B, M] (the score
  the model ranks by: retrieval score, or rating / click probability),
  `skipped_items`.
- `recommend_in_context`, `score_in_context` and `explain_in_context`: the same, plus what else
  the model may have read in training: `history_ratings` float32 [B, N],
  `history_timestamps` int64 [B, N] and `history_events` string [B, N]
  (aligned with `history`; 0 or "" = unknown), `timestamp` int64 [B], the
  request time (the time the next behaviour happens), and `user_id` string
  [B] ("" or an id unseen in training = a new user). The plain signatures
  pass 0 for all of these.

A history item's event "" stands for the training data's only event type when
it had one (MovieLens: every row is a rating), so a single-event model sees at
serving exactly what it saw in training through every signature.

Every signature taking a history skips the history item ids the catalogue
does not know (a new SKU; items added by `--update_catalog` are in the
catalogue's ids file, hence known) with their context, answers from the rest,
and reports them in `skipped_items` string [B, S] (S >= 1: each row's skipped
ids in request order, padded with ""); with `unknown_items="error"` they fail
the request instead. A history is read from its newest
`RequestEncoder.max_history_length` known behaviours (the exclusion of seen
items covers all of them), so a long history costs no more than the window.

Unknown candidate ids or event names and a bad `k` raise `InvalidArgumentError`
(TF Serving answers INVALID_ARGUMENT) whose message names the offending value;
so does a request above a work bound: `explain` above
`influence.MAX_EXPLAIN_COST`, text signatures above `MAX_TEXT_TOKENS`.

What is saved: the catalogue tables and matrix, and exactly the `tf.Variable`s
the traced signatures read (`used_variables`), each once. The model itself is
not a dependency of the module, so unused heads and optimizer slots stay out;
and unlike `keras.export.ExportArchive`, which tracks both each
`keras.Variable` and the `tf.Variable` behind it (saving every weight twice:
184 MB for the 91 MB MiniLM encoder), nothing is written twice.

Example:

>>> module = RecommenderServing(model, catalogue, "item_ids.txt",  # doctest: +SKIP
...                             num_model_items=2, catalogue_embeddings=emb, max_k=2)
>>> module.recommend(tf.constant([["i1", ""]]), tf.constant([5]))  # doctest: +SKIP
{'item_ids': <tf.Tensor: shape=(1, 5), dtype=string ...>, 'scores': ...}
"""

import numpy as np
import tensorflow as tf

from tfrec.data import schema
from tfrec.exporting import checks
from tfrec.models import request_encoder as encoder_lib
from tfrec.models.catalogue_retrieval import CatalogueRetrieval
from tfrec.models.features import candidate_features
from tfrec.models.influence import checked_cost, occlusion_influence
from tfrec.models.item_tower import text_item_vectors
from tfrec.models.request_encoder import RequestEncoder, checked_top_k, request_columns, require, vocabulary_table

RECOMMEND = "recommend"
RECOMMEND_FROM_TEXT = "recommend_from_text"
EMBED_ITEMS = "embed_items"
SCORE = "score"
RECOMMEND_IN_CONTEXT = "recommend_in_context"
SCORE_IN_CONTEXT = "score_in_context"
EXPLAIN = "explain"
EXPLAIN_IN_CONTEXT = "explain_in_context"
MAX_EXPLAIN_CANDIDATES = 100
# Tokens one text request may make the text encoder read (texts x tokens per text): 256 texts of 128 tokens.
MAX_TEXT_TOKENS = 1 << 15
SERVING_DEFAULT = "serving_default"

_HISTORY = tf.TensorSpec([None, None], tf.string, name="history")
_CANDIDATES = tf.TensorSpec([None, None], tf.string, name="candidates")
_TEXT = tf.TensorSpec([None], tf.string, name="text")
_K = tf.TensorSpec([None], tf.int32, name="k")
_HISTORY_RATINGS = tf.TensorSpec([None, None], tf.float32, name="history_ratings")
_HISTORY_TIMESTAMPS = tf.TensorSpec([None, None], tf.int64, name="history_timestamps")
_TIMESTAMP = tf.TensorSpec([None], tf.int64, name="timestamp")
_HISTORY_EVENTS = tf.TensorSpec([None, None], tf.string, name="history_events")
_USER_ID = tf.TensorSpec([None], tf.string, name="user_id")
_CONTEXT = [_HISTORY_RATINGS, _HISTORY_TIMESTAMPS, _HISTORY_EVENTS, _TIMESTAMP, _USER_ID]


def used_variables(functions):
    """The distinct variables the traced `functions` read, in a stable order.

    Only these are saved: weights of heads or towers no signature uses (and
    optimizer state) stay out of the export.
    """
    found = {}
    for function in functions:
        for variable in function.get_concrete_function().variables:
            found.setdefault(variable.ref(), variable)
    return sorted(found.values(), key=lambda v: v.name)


def context_features(model):
    """Schema features `model` reads that only the `*_in_context` signatures carry.

    The plain `recommend` and `score` signatures pass 0 for them, so a model
    reading any of them sees less there than in training.
    """
    cfg = model.cfg
    features = []
    if cfg.use_ratings or cfg.behaviour_text or model.has_ranking:
        features.append(schema.HISTORY_RATINGS)
    if cfg.use_time_gaps:
        features += [schema.HISTORY_TIMESTAMPS, schema.TARGET_TIMESTAMP]
    if model.num_events > 2:
        features.append(schema.HISTORY_EVENTS)
    if cfg.use_user_ids:
        features.append(schema.USER_INDEX)
    return features


def _keep_untracked(module, model):
    """Stores `model` on `module` without making it a SavedModel dependency.

    A tracked model would drag all of its state into the export (unused heads,
    optimizer slots); only the variables the signatures read are saved, through
    `module.model_variables`.
    """
    object.__setattr__(module, "_model", model)


class RecommenderServing(tf.Module):
    """The signatures of a tfrec model over a catalogue.

    Retrieval signatures (`recommend` = `serving_default`,
    `recommend_from_text`, `embed_items`) exist for retrieval and multitask
    models, the ranking signature `score` for ranking and multitask models
    (`serving_default` for a ranking model).

    Args:
        model: a `tfrec.models.Recommender`: retrieval uses
            `query_embeddings(features)`, `text_item_embeddings(texts)` and, in
            behaviour-text mode, `text_query_embeddings(texts)`; ranking uses
            `score(features)` (`features[TARGET_ITEM_ID]` is the candidate).
        catalogue: the `Catalogue` served (may extend the model's vocabulary).
        ids_file: path of the catalogue ids file (`Catalogue.write_ids`).
        num_model_items: items the model was trained on (indices 1..this);
            items after them are recommendable but the towers do not know them.
        catalogue_embeddings: retrieval only, float32 [num_items, d], row i =
            item index i + 1.
        max_k: retrieval only, the largest `k` accepted (at most num_items).
        users_file, events_file: the model's user ids and event names, one
            per line in index order (index 1 first), as `ids_file`.
        titles_file: retrieval only, the catalogue's titles, as `ids_file`.
        catalogue_dtype: how the retrieval matrix is stored, one of
            `tfrec.models.catalogue_retrieval.CATALOGUE_DTYPES` (`bfloat16`:
            half the bytes, `int8`: a quarter; scores computed in float32).
        unknown_items: "skip" (unknown history item ids are dropped and
            reported in `skipped_items`) or "error" (they fail the request).
    """

    def __init__(self, model, catalogue, ids_file, num_model_items, catalogue_embeddings=None, max_k=None,
                 users_file=None, events_file=None, titles_file=None, catalogue_dtype="float32",
                 unknown_items="skip"):
        super().__init__()
        self.is_retrieval, self.is_ranking = model.has_retrieval, model.has_ranking
        if self.is_ranking and num_model_items != catalogue.num_items:
            raise ValueError(
                "a ranking model cannot score items added after training: the catalogue has "
                f"{catalogue.num_items} items, the model {num_model_items}"
            )
        _keep_untracked(self, model)
        self.num_items = catalogue.num_items
        self.num_model_items = num_model_items
        if users_file is None or events_file is None:
            raise ValueError("users_file and events_file are required: the context signatures map user ids "
                             "and event names to the model's indices")
        # Line i of each file holds the id of index i + 1 (index 0 is padding).
        self.request_encoder = RequestEncoder(ids_file, users_file, events_file, default_event=model.default_event,
                                              num_model_items=num_model_items, max_k=max_k,
                                              unknown_items=unknown_items, name="request_encoder")
        if self.is_retrieval:
            self.id_table = vocabulary_table(ids_file, reverse=True)
            if titles_file is None:
                raise ValueError("a retrieval model needs titles_file: its answers carry each item's title")
            self.title_table = vocabulary_table(titles_file, reverse=True)
            if catalogue_embeddings is None or catalogue_embeddings.shape[0] != self.num_items:
                raise ValueError(
                    "a retrieval model needs catalogue_embeddings with one row per catalogue "
                    f"item ({self.num_items}), got "
                    f"{None if catalogue_embeddings is None else catalogue_embeddings.shape}"
                )
            if max_k is None or not 1 <= max_k <= self.num_items:
                raise ValueError(f"max_k must be in [1, {self.num_items}], got {max_k}")
            self.max_k = max_k
            untrained = model.untrained_id_vector()  # fixed once exported: a constant, not the id table
            object.__setattr__(self, "_untrained_id", None if untrained is None else np.asarray(untrained, np.float32))
            # Row 0 is padding, as in the model's own store; never returned.
            padded = np.concatenate([np.zeros_like(catalogue_embeddings[:1]), catalogue_embeddings], axis=0)
            # Untracked like the model: its variable is saved through `model_variables`.
            object.__setattr__(self, "_retrieval", CatalogueRetrieval(
                padded.astype(np.float32), catalogue_dtype=catalogue_dtype, name="catalogue"))
        self._make_functions()
        self.model_variables = used_variables(self.signatures().values())
        # tf.saved_model.save traces again in its own context: fresh functions
        # keep the traces above (for finding variables) out of the SavedModel.
        self._make_functions()

    @property
    def catalogue_bytes(self) -> int:
        """Bytes of the stored retrieval matrix (and its int8 scales); 0 without retrieval."""
        if not self.is_retrieval:
            return 0
        return checks.weights_bytes(self._retrieval.weights)

    def _make_functions(self):
        """(Re)creates the tf.functions of the signatures this model supports."""
        if self.is_retrieval:
            # One function for the text tower, called by two signatures: the
            # SavedModel then holds the BERT graph once.
            self.encode_item_texts = tf.function(
                self._model.item_tower.text_projections, input_signature=[_TEXT]
            )
            self.recommend = tf.function(self._recommend, input_signature=[_HISTORY, _K])
            self.recommend_from_text = tf.function(
                self._recommend_from_text, input_signature=[_TEXT, _K]
            )
            self.embed_items = tf.function(self._embed_items, input_signature=[_TEXT])
            self.recommend_in_context = tf.function(
                self._recommend_in_context, input_signature=[_HISTORY, *_CONTEXT, _K])
        if self.is_ranking:
            self.score = tf.function(self._score, input_signature=[_HISTORY, _CANDIDATES])
            self.score_in_context = tf.function(
                self._score_in_context, input_signature=[_HISTORY, *_CONTEXT, _CANDIDATES])
        self.explain = tf.function(self._explain, input_signature=[_HISTORY, _CANDIDATES])
        self.explain_in_context = tf.function(
            self._explain_in_context, input_signature=[_HISTORY, *_CONTEXT, _CANDIDATES])

    def signatures(self):
        """Maps signature name -> tf.function, `serving_default` included."""
        functions = {}
        if self.is_retrieval:
            functions[RECOMMEND] = self.recommend
            functions[RECOMMEND_FROM_TEXT] = self.recommend_from_text
            functions[EMBED_ITEMS] = self.embed_items
            functions[RECOMMEND_IN_CONTEXT] = self.recommend_in_context
        if self.is_ranking:
            functions[SCORE] = self.score
            functions[SCORE_IN_CONTEXT] = self.score_in_context
        functions[EXPLAIN] = self.explain
        functions[EXPLAIN_IN_CONTEXT] = self.explain_in_context
        functions[SERVING_DEFAULT] = functions[RECOMMEND if self.is_retrieval else SCORE]
        return functions

    def _encode(self, history, context=None, **inputs):
        """The `RequestEncoder` output of a request (`context`: the five context inputs, in signature order)."""
        inputs[encoder_lib.HISTORY] = history
        inputs.update(zip(encoder_lib.CONTEXT_INPUTS, context or ()))
        return self.request_encoder(inputs)

    def _answer(self, queries, k, exclude=None, bonus=None):
        """The top-k answer by item id and title, `exclude`: catalogue indices per query; `bonus`: the
        transition prior's scores of the model's rows (`Recommender.prior_scores`)."""
        scores, indices = checked_top_k(self._retrieval, queries, k, exclude, bonus)
        rows = tf.cast(indices - 1, tf.int64)  # line i of the ids file holds the id of catalogue index i + 1
        return {"item_ids": self.id_table.lookup(rows), "scores": scores, "item_titles": self.title_table.lookup(rows)}

    def _recommend(self, history, k, context=None):
        """Top-k catalogue items for behaviour histories (seen items excluded: `Recommender.seen_to_exclude`)."""
        request = self._encode(history, context, k=k)
        # Items added after training are excluded but unknown to the towers (`model_history`).
        answer = self._answer(self._model.query_embeddings(request["features"]), request["k"],
                              exclude=self._model.seen_to_exclude(request),
                              bonus=self._model.prior_scores(request["features"]))
        return dict(answer, skipped_items=request["skipped_items"])

    def _recommend_in_context(self, history, history_ratings, history_timestamps, history_events, timestamp,
                              user_id, k):
        """`recommend` with the history's ratings, times and events, the request time and the user."""
        return self._recommend(history, k, (history_ratings, history_timestamps, history_events, timestamp, user_id))

    def _recommend_from_text(self, text, k):
        """Top-k catalogue items for free behaviour text.

        Uses the model's behaviour-text encoder when it has one, else the
        item-text tower (the text is then matched like an item description).
        """
        cfg = self._model.cfg
        with tf.control_dependencies(self._checked_texts(text, cfg.behaviour_text_length if cfg.behaviour_text
                                                         else cfg.sequence_length)):
            if cfg.behaviour_text:
                queries = self._model.text_query_embeddings(text)
            else:  # the text alone: the id part new items share would favour them
                queries = text_item_vectors(self.encode_item_texts(text))
        return self._answer(queries, self.request_encoder.checked_k(k, tf.shape(text)[0]))

    def _embed_items(self, text):
        """Item embeddings of item texts (same space as the catalogue matrix): the text and the
        id part of a new item (`Recommender.text_item_embeddings`)."""
        with tf.control_dependencies(self._checked_texts(text, self._model.cfg.sequence_length)):
            return {"embeddings": text_item_vectors(self.encode_item_texts(text), self._untrained_id)}

    @staticmethod
    def _checked_texts(text, tokens_per_text):
        """The check that `text` `[B]` costs at most `MAX_TEXT_TOKENS` tokens (B x `tokens_per_text`), run
        before the texts are tokenised."""
        most = MAX_TEXT_TOKENS // tokens_per_text
        return require(tf.size(text) <= most, lambda: f"at most {most} texts per request",
                       [f"at most {most} texts per request ({MAX_TEXT_TOKENS} tokens of the text encoder, "
                        f"{tokens_per_text} per text); got", tf.size(text), "texts: send them in batches"],
                       name="check_text_count")

    def _score_in_context(self, history, history_ratings, history_timestamps, history_events, timestamp, user_id,
                          candidates):
        """`score` with the history's ratings, times and events, the request time and the user."""
        return self._score(history, candidates, (history_ratings, history_timestamps, history_events, timestamp,
                                                 user_id))

    def _score(self, history, candidates, context=None):
        """Predicted rating (or click probability) of each candidate."""
        request = self._encode(history, context, candidates=candidates)
        check = tf.debugging.Assert(
            tf.reduce_all(request["candidates"] > 0),
            ["candidates must not contain the padding id (empty string)"],
            name="check_candidates_padding",
        )
        with tf.control_dependencies([check]):  # one example per (history, candidate) pair
            scores = self._model.score(candidate_features(request["features"], request["candidates"]))
        return {"scores": tf.cast(tf.reshape(scores, tf.shape(request["candidates"])), tf.float32),
                "skipped_items": request["skipped_items"]}

    def _explain_in_context(self, history, history_ratings, history_timestamps, history_events, timestamp, user_id,
                            candidates):
        """`explain` with the history's ratings, times and events, the request time and the user."""
        return self._explain(history, candidates, (history_ratings, history_timestamps, history_events, timestamp,
                                                   user_id))

    def _explain(self, history, candidates, context=None):
        """The influence of each history behaviour on each candidate's score (occlusion)."""
        request = self._encode(history, context, candidates=candidates)
        history_indices, candidate_indices = request["history"], request["candidates"]
        check = tf.debugging.Assert(
            tf.reduce_all(tf.logical_and(candidate_indices > 0, candidate_indices <= self.num_model_items)),
            ["candidates must be items the model was trained on (no padding id \"\", no item added after "
             "training)"],
            name="check_explain_candidates",
        )
        behaviours = tf.debugging.Assert(
            tf.reduce_all(tf.reduce_any(history_indices > 0, axis=1)),
            ["every history needs at least one known behaviour to explain (a row holds only padding \"\" or "
             "unknown items)"],
            name="check_explain_history",
        )
        candidates_check = tf.debugging.Assert(
            tf.shape(candidate_indices)[1] <= MAX_EXPLAIN_CANDIDATES,
            [f"explain takes at most {MAX_EXPLAIN_CANDIDATES} candidates per history; got",
             tf.shape(candidate_indices)[1]],
            name="check_explain_candidates_count",
        )
        cost = checked_cost(self._model, request["model_history"], candidate_indices)
        # Items added after training are unknown to the towers (`model_history`): no influence.
        with tf.control_dependencies([check, behaviours, candidates_check, *cost]):
            influence, scores = occlusion_influence(self._model, request["model_history"], candidate_indices,
                                                    request["context"])
        return {"influence": tf.cast(request_columns(influence, request["positions"]), tf.float32),
                "scores": tf.cast(scores, tf.float32), "skipped_items": request["skipped_items"]}
