"""`ItemTower`: catalogue items -> L2-normalised embeddings from text and/or id.

Item text goes through a `TextEncoder` (BERT), a per-dimension
standardisation (statistics of the catalogue) and a projection; an optional
item-id embedding is added; the sum is L2-normalised. `build()` runs the
frozen part of the encoder once over the whole catalogue and caches it
(pooled vectors when the encoder is frozen; the hidden states at the
frozen/trainable boundary for `top:N`; token ids for `all`), so a training step
only runs the trainable top layers, once per unique item. The frozen outputs
come from the on-disk text vector cache when an earlier run computed them with
the same encoder (`tfrec.text_cache`).

New items known only by their text (cold start) are embedded by
`text_item_embeddings`, which uses the text path alone; training with
`id_dropout` > 0 keeps that path meaningful on its own.

Example:

>>> tower = ItemTower(item_texts=["", "star wars. sci-fi", "amelie. comedy"],
...                   embedding_dim=16, encoder={"source": "tiny"})
>>> tower.build()  # encodes the catalogue
>>> tower(tf.constant([[1, 2]])).shape
TensorShape([1, 2, 16])
"""

import keras
import numpy as np
import tensorflow as tf

from tfrec.config import ConfigError
from tfrec.text_encoder import TextEncoder

ENCODE_BATCH = 128  # texts per batch when encoding the catalogue
# Standardising divides each text dimension by its spread over the catalogue.
# Sentence encoders have near-constant dimensions (MiniLM has three, with
# standard deviations of 0, 0 and 6e-9), which that would stretch up to 10^7
# times: once the encoder fine-tunes, changes of 1e-6 there swamp the vector.
# No dimension is stretched more than this fraction of the median spread allows.
STD_FLOOR_FRACTION = 0.1
MAX_TOKEN_STATE_BYTES = 8 * 2**30
"""Most memory the catalogue's cached token states may take (`top:N`): float32 states of every item's
tokens."""


def adapt_standardization(normalization, vectors):
    """Adapts a `keras.layers.Normalization` to `vectors`, flooring small spreads.

    Each dimension's standard deviation is raised to at least
    `STD_FLOOR_FRACTION` times the median one, so near-constant dimensions stay
    near zero instead of being blown up.

    Example:

    >>> norm = keras.layers.Normalization()
    >>> adapt_standardization(norm, np.array([[0.0, 1.0], [2.0, 1.0]]))
    >>> norm(np.array([[1.0, 1.000001]])).numpy().round(3)
    array([[0., 0.]], dtype=float32)
    """
    normalization.adapt(vectors)
    variance = np.asarray(normalization.adapt_variance)
    floor = STD_FLOOR_FRACTION * np.median(np.sqrt(variance))
    normalization.adapt_variance.assign(np.maximum(variance, floor ** 2))
    normalization.finalize_state()


@keras.saving.register_keras_serializable(package="tfrec")
def text_item_vectors(projections, untrained_id=None):
    """Item vectors from projected texts (`ItemTower.text_projections`): plus `untrained_id`, the id
    part of items without one of their own, when given; L2-normalised like `catalogue()` rows.

    >>> text_item_vectors(tf.constant([[3.0, 0.0]]), tf.constant([0.0, 4.0])).numpy().round(2)
    array([[0.6, 0.8]], dtype=float32)
    """
    if untrained_id is not None:
        projections = projections + untrained_id
    return tf.math.l2_normalize(projections, axis=-1)


class ItemTower(keras.layers.Layer):
    """Embeds catalogue items by index (0 = padding) or new items by text.

    Args:
        item_texts: list of str, one per catalogue index (index 0 = padding,
            usually ""). Its length fixes the catalogue size. None for texts
            given by `set_item_texts` before `build` (then pass `num_rows`):
            they are the catalogue, saved by the model that owns the tower,
            not a hyperparameter of the tower's config.
        embedding_dim: output size.
        encoder: dict of `TextEncoder` arguments (`source`, `sequence_length`,
            `pooling`, `trainable`), or None for id embeddings only.
        use_item_ids: add a learned id embedding.
        id_dropout: training-time probability of dropping an item's id
            embedding (per unique item and step).
        refresh_items: with a fine-tuned encoder ("top:N" or "all"), how many
            of a step's focus items are re-encoded (see `catalogue`); 0 = all.
        seed: initialisation and dropout seed.
        num_rows: catalogue indices, padding included (default: `len(item_texts)`).
        **kwargs: base layer arguments.

    Call args:
        item_ids: int32 tensor of catalogue indices, any shape.
        training: enables id dropout and encoder dropout.

    Returns:
        float32 `item_ids.shape + [embedding_dim]`, L2-normalised.
    """

    def __init__(self, item_texts=None, embedding_dim=64, encoder=None, use_item_ids=True,
                 id_dropout=0.0, refresh_items=0, seed=0, num_rows=None, **kwargs):
        super().__init__(**kwargs)
        if encoder is None and not use_item_ids:
            raise ValueError("ItemTower needs an encoder, use_item_ids=True, or both")
        if (item_texts is None) == (num_rows is None):
            raise ValueError(f"ItemTower needs item_texts or num_rows, one of them; got {num_rows=} and "
                             f"{'no' if item_texts is None else len(item_texts)} item_texts")
        self.num_rows = len(item_texts) if num_rows is None else num_rows
        self.item_texts = None
        if item_texts is not None:
            self.set_item_texts(item_texts)
        self.embedding_dim = embedding_dim
        self.encoder_args = dict(encoder) if encoder is not None else None
        self.use_item_ids = use_item_ids
        self.id_dropout = id_dropout
        self.refresh_items = refresh_items
        self.seed = seed
        self.text_encoder = None
        if encoder is not None:
            self.text_encoder = TextEncoder(**self.encoder_args, seed=seed, name="item_text_encoder")
            self.text_projection = keras.layers.Dense(embedding_dim, name="text_projection")
            self.text_normalization = keras.layers.Normalization(name="text_normalization")
        if use_item_ids:
            self.id_embedding = keras.layers.Embedding(
                self.num_rows, embedding_dim, name="item_id_embedding",
                embeddings_initializer=keras.initializers.RandomNormal(stddev=0.05, seed=seed))
        self.seed_generator = keras.random.SeedGenerator(seed)

    def set_item_texts(self, item_texts) -> None:
        """Sets the catalogue's texts, one per index (before `build`, which encodes them)."""
        if len(item_texts) != self.num_rows:
            raise ValueError(f"item_texts has {len(item_texts)} entries; expected num_rows = {self.num_rows}")
        self.item_texts = list(item_texts)

    def catalogue_tokens(self):
        """The tokenised catalogue texts, without the padding columns no text uses."""
        tokens = self.text_encoder.tokenize(tf.constant(self.item_texts))
        length = int(tf.reduce_max(tf.reduce_sum(tokens["padding_mask"], axis=1)))
        return {name: value[:, :length] for name, value in tokens.items()}

    def _cache_catalogue_text(self):
        """Runs the frozen part of the encoder over every catalogue text once, or reads
        its outputs from the on-disk text vector cache (`TextEncoder.cached_vectors`)."""
        encoder = self.text_encoder
        if encoder.trainable_spec == "all":
            self._mode = "tokens"
            self._tokens = self.catalogue_tokens()
            self._padding_mask = self._tokens["padding_mask"]
        elif encoder.num_trainable_layers == 0:
            self._mode = "pooled"
            self._text_cache = tf.constant(encoder.cached_vectors(self.item_texts, ENCODE_BATCH))
        else:
            self._mode = "hidden"
            self._check_token_state_memory()
            hidden, padding_mask = encoder.cached_lower_states(self.item_texts, ENCODE_BATCH)
            self._text_cache, self._padding_mask = tf.constant(hidden), tf.constant(padding_mask)

    def _check_token_state_memory(self):
        """Raises `ConfigError` when the catalogue's cached token states would take more than
        `MAX_TOKEN_STATE_BYTES` (counted at the longest text's tokens, as they are padded)."""
        encoder = self.text_encoder
        bytes_per_position = self.num_rows * encoder.hidden_dim * 4  # one token position of every item
        if bytes_per_position * encoder.sequence_length <= MAX_TOKEN_STATE_BYTES:
            return
        longest = int(self.catalogue_tokens()["padding_mask"].shape[1])
        size = bytes_per_position * longest
        if size > MAX_TOKEN_STATE_BYTES:
            raise ConfigError(
                f"ModelConfig.encoder_trainable={encoder.trainable_spec!r}: the token states of {self.num_rows:,} "
                f"item texts of up to {longest} tokens take {size / 2**30:.1f} GiB, more than the "
                f"{MAX_TOKEN_STATE_BYTES / 2**30:.0f} GiB allowed; use the frozen encoder's pooled vectors "
                f"(encoder_trainable 'none') or a ModelConfig.sequence_length below {encoder.sequence_length}")

    def encode_catalogue(self):
        """(Re-)encodes the catalogue texts with the encoder's current weights.

        `build` calls it; call it again after changing the frozen encoder's
        weights. A frozen encoder's pooled vectors are kept as a weight
        (`text_vectors`), so a saved model loads back the vectors it trained on.
        """
        self._cache_catalogue_text()
        if self._mode == "pooled":
            if getattr(self, "text_vectors", None) is None:
                self.text_vectors = keras.Variable(self._text_cache, trainable=False, name="text_vectors")
            else:
                self.text_vectors.assign(self._text_cache)
            self._text_cache = None  # read from `text_vectors`
        # Standardise each BERT dimension over the catalogue: sentence
        # embeddings share a large common direction that would otherwise
        # dominate the projected item vectors.
        text_vectors = self._catalogue_text_vectors(tf.range(self.num_rows, dtype=tf.int32), training=False)
        adapt_standardization(self.text_normalization, text_vectors)
        if self._mode != "pooled":
            # Last computed text vector of every item, for `refresh_items`.
            if getattr(self, "text_bank", None) is None:
                self.text_bank = keras.Variable(text_vectors, trainable=False, name="text_bank")
            else:
                self.text_bank.assign(text_vectors)

    @property
    def frozen_text(self) -> bool:
        """Whether the item texts reach the model only as the frozen encoder's pooled vectors (`text_vectors`)."""
        encoder = self.text_encoder
        return encoder is not None and encoder.trainable_spec != "all" and encoder.num_trainable_layers == 0

    def build(self, input_shape=None, encode_catalogue=True):
        """Encodes the catalogue's texts (frozen layers, once) and creates the weights.

        With `encode_catalogue=False` and a frozen encoder, the text vectors and
        their standardisation start empty, for weights loaded next (a saved
        run) or copied (`tfrec.training.warm_start`): encoding a catalogue
        costs minutes, and those weights hold its result.
        """
        if self.built:
            return
        if self.text_encoder is not None and self.item_texts is None:
            raise ValueError("ItemTower.build encodes the catalogue texts: set_item_texts first")
        if self.text_encoder is not None:
            hidden = self.text_encoder.hidden_dim
            if encode_catalogue or not self.frozen_text:
                self.encode_catalogue()
            else:
                self._mode = "pooled"
                self.text_vectors = keras.Variable(np.zeros((self.num_rows, hidden), np.float32), trainable=False,
                                                   name="text_vectors")
                self.text_normalization.build((None, hidden))
            self.text_projection.build((None, hidden))
        if self.use_item_ids:
            self.id_embedding.build((None,))
        self.built = True

    def encode_items(self, indices) -> None:
        """Encodes the texts of some catalogue indices with the current weights, e.g. the items a warm
        start adds: into `text_vectors` (a frozen encoder's), else into `text_bank`, the last vectors that
        training reads for items it does not re-encode; the standardisation is kept."""
        indices = np.asarray(indices, np.int32)
        if self.text_encoder is None or not len(indices):
            return
        if self.frozen_text:
            vectors = tf.constant(self.text_encoder.cached_vectors([self.item_texts[i] for i in indices],
                                                                   ENCODE_BATCH))
            self.text_vectors.value.scatter_update(tf.IndexedSlices(vectors, tf.constant(indices)))
            return
        for start in range(0, len(indices), ENCODE_BATCH):
            batch = tf.constant(indices[start:start + ENCODE_BATCH])
            vectors = self._catalogue_text_vectors(batch, training=False)
            self.text_bank.value.scatter_update(tf.IndexedSlices(vectors, batch))

    def _catalogue_text_vectors(self, ids, training):
        encoder = self.text_encoder
        if self._mode == "pooled":
            return tf.gather(self.text_vectors, ids)
        mask = tf.gather(self._padding_mask, ids)
        if self._mode == "hidden":
            hidden = tf.gather(self._text_cache, ids)
        else:
            tokens = {name: tf.gather(value, ids) for name, value in self._tokens.items()}
            hidden = encoder.encode_lower(tokens, training=training)
        return encoder.encode_upper(hidden, mask, training=training)

    def _embed_unique(self, ids, training, text_vectors=None, id_mask=None, untrained_id=None):
        total = 0.0
        if self.text_encoder is not None:
            if text_vectors is None:
                text_vectors = self._catalogue_text_vectors(ids, training)
            total = self.text_projection(self.text_normalization(text_vectors), training=training)
        if self.use_item_ids:
            id_vectors = self.id_embedding(ids)
            if training and self.id_dropout > 0:
                keep = keras.random.uniform(tf.shape(ids), seed=self.seed_generator) >= self.id_dropout
                id_vectors = id_vectors * tf.cast(keep, id_vectors.dtype)[:, None]
            if id_mask is not None and self.text_encoder is not None:
                trained = tf.gather(tf.cast(id_mask, id_vectors.dtype), ids)[:, None]
                id_vectors = id_vectors * trained
                if untrained_id is not None:
                    id_vectors = id_vectors + (1.0 - trained) * untrained_id
            total = total + id_vectors
        return tf.math.l2_normalize(total, axis=-1)

    def call(self, item_ids, training=False):
        item_ids = tf.convert_to_tensor(item_ids, tf.int32)
        flat = tf.reshape(item_ids, [-1])
        unique, position = tf.unique(flat)
        vectors = tf.gather(self._embed_unique(unique, training), position)
        return tf.reshape(vectors, tf.concat([tf.shape(item_ids), [self.embedding_dim]], 0))

    def catalogue(self, training=False, focus_ids=None, id_mask=None, untrained_id=None):
        """Returns the embeddings of every catalogue index, `[num_rows, embedding_dim]`.

        Args:
            training: training mode.
            id_mask: optional float `[num_rows]`; items with 0 are embedded
                from their text (with a text encoder) and `untrained_id`, e.g.
                items no training example held, whose id embeddings never trained.
            untrained_id: optional `[embedding_dim]` id vector of those items
                (default: none, text alone).
            focus_ids: optional int32 item indices (e.g. the batch's targets).
                When training a fine-tuned encoder with `refresh_items` > 0,
                only up to `refresh_items` of these run through the trainable
                encoder layers (and get gradients), then replace their entries
                in `text_bank`, the last computed text vector of every item.
                The forward pass reads every item from the bank, the refreshed
                ones included (their gradients pass straight through to the
                encoder): were the batch's targets fresh and the negatives
                stale, the model could tell them apart by staleness alone.
                Otherwise every item is recomputed.
        """
        every = tf.range(self.num_rows, dtype=tf.int32)
        if not (training and focus_ids is not None and self.refresh_items > 0
                and self.text_encoder is not None and self._mode != "pooled"):
            return self._embed_unique(every, training, id_mask=id_mask, untrained_id=untrained_id)
        chosen = tf.random.shuffle(tf.unique(tf.reshape(focus_ids, [-1]))[0])[:self.refresh_items]
        bank = tf.stop_gradient(self.text_bank.value)
        fresh = self._catalogue_text_vectors(chosen, training)
        straight_through = tf.gather(bank, chosen) + fresh - tf.stop_gradient(fresh)
        text_vectors = tf.tensor_scatter_nd_update(bank, chosen[:, None], straight_through)
        self.text_bank.value.scatter_update(tf.IndexedSlices(tf.stop_gradient(fresh), chosen))
        return self._embed_unique(every, training, text_vectors, id_mask, untrained_id)

    def text_projections(self, texts):
        """The projected text vectors of item texts, `[batch, embedding_dim]`, not normalised:
        `text_item_embeddings` before an id part and the L2 normalisation."""
        if self.text_encoder is None:
            raise ValueError("item text embeddings need a model built with use_text=True")
        return self.text_projection(self.text_normalization(self.text_encoder(texts)))

    def text_item_embeddings(self, texts, untrained_id=None):
        """Embeds items from their text (and no id of their own), e.g. new or cold items.

        Args:
            texts: `tf.string` `[batch]`, formatted like the catalogue texts.
            untrained_id: optional `[embedding_dim]` id vector added to the text's
                (as `catalogue` does for items with `id_mask` 0).

        Returns:
            float32 `[batch, embedding_dim]`, L2-normalised, comparable with
            `catalogue()` rows.
        """
        return text_item_vectors(self.text_projections(texts), untrained_id)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.embedding_dim,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_rows": self.num_rows,
            "embedding_dim": self.embedding_dim,
            "encoder": self.encoder_args,
            "use_item_ids": self.use_item_ids,
            "id_dropout": self.id_dropout,
            "refresh_items": self.refresh_items,
            "seed": self.seed,
        })
        return config


def catalogue_size_check(item_texts, num_items):
    """Raises ValueError unless `item_texts` has one entry per index (num_items + 1)."""
    if len(item_texts) != num_items + 1:
        raise ValueError(
            f"item_texts has {len(item_texts)} entries; expected num_items + 1 = "
            f"{num_items + 1} (index 0 is padding)"
        )
    bad = [i for i, text in enumerate(item_texts) if not isinstance(text, str)]
    if bad:
        raise ValueError(f"item_texts[{bad[0]}] is {item_texts[bad[0]]!r}; expected a str")
