"""Behaviour-aware adaptation of the item text encoder, run before sequence training.

The top `layers` transformer layers of the item tower's BERT are fine-tuned
contrastively on pairs of items that follow each other (within `window`
behaviours) in the users' training sequences: an item's text embedding is
pulled towards the texts of the items met next to it, and away from the other
items of the batch (in-batch softmax both ways, pairs of the same item
masked). It runs over item texts, not examples: the frozen lower layers run
once per catalogue item, and a step runs only the top layers over
2 x `batch_size` texts. The item tower then encodes its catalogue again with
the adapted encoder, and sequence training reads those vectors as it reads a
frozen encoder's.

Example:

>>> pairs = cooccurrence_pairs(data.split.train, data.vocab, window=3)
>>> losses = adapt_item_text(model.item_tower, pairs, steps=200)
>>> losses[-1] < losses[0]
True
"""

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tfrec.config import require
from tfrec.data import schema


def cooccurrence_pairs(interactions, vocab, window=3):
    """(item, item) index pairs that follow each other within `window` behaviours of a user.

    Args:
        interactions: DataFrame sorted by user and time (e.g. `PreparedData.split.train`).
        vocab: the `Vocabulary`.
        window: largest distance between the two behaviours of a pair.

    Returns:
        int32 `[P, 2]`, pairs of distinct items, each pair once per occurrence.
    """
    users = vocab.user_index(interactions[schema.USER_ID].to_numpy())
    items = vocab.item_index(interactions[schema.ITEM_ID].to_numpy())
    pairs = []
    for distance in range(1, window + 1):
        same_user = users[distance:] == users[:-distance]
        pair = np.stack([items[:-distance], items[distance:]], axis=1)[same_user]
        pairs.append(pair[pair[:, 0] != pair[:, 1]])
    return np.concatenate(pairs, axis=0).astype(np.int32) if pairs else np.zeros([0, 2], np.int32)


def adapt_item_text(item_tower, pairs: np.ndarray, steps: int = 200, layers: int = 1, batch_size: int = 32,
                    learning_rate: float = 5e-5, length: int = 64, temperature: float = 0.05,
                    seed: int = 0) -> list:
    """Fine-tunes the item tower's text encoder on co-occurring item pairs, then re-encodes the catalogue.

    Args:
        item_tower: a built `ItemTower` with a text encoder.
        pairs: int32 `[P, 2]` catalogue index pairs (`cooccurrence_pairs`).
        steps: optimizer steps.
        layers: top transformer layers fine-tuned.
        batch_size: item pairs per step.
        learning_rate: peak AdamW learning rate (linear warmup over a tenth of
            the steps, then cosine decay).
        length: tokens of each text the fine-tuned layers read during the
            adaptation (the first ones; the catalogue is then encoded whole).
        temperature: divides the cosine similarities.
        seed: pair sampling seed.

    Returns:
        list of float, the loss of each step.

    Raises:
        ConfigError: no text encoder, no pairs, or more layers than the encoder has.
    """
    encoder = item_tower.text_encoder
    require(encoder is not None, "text adaptation needs a model with ModelConfig.use_text=True")
    require(len(pairs) > 0, "text adaptation needs item pairs: no user has two different items in training")
    require(1 <= layers <= encoder.num_layers,
            f"TrainConfig.text_adaptation_layers={layers}: expected 1 to {encoder.num_layers} "
            "(the encoder's layers)")
    split = encoder.num_layers - layers
    tokens = item_tower.catalogue_tokens()
    hidden = tf.concat([encoder.encode_lower({k: v[s:s + 128] for k, v in tokens.items()}, split=split)
                        [:, :length] for s in range(0, item_tower.num_rows, 128)], axis=0)
    mask = tokens["padding_mask"][:, :length]
    layers = encoder.backbone.transformer_layers[split:]
    for layer in layers:
        layer.trainable = True
    variables = [v for layer in layers for v in layer.trainable_variables]
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, warmup_target=learning_rate, warmup_steps=max(1, steps // 10))
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=0.01, global_clipnorm=1.0)
    optimizer.build(variables)

    @tf.function(reduce_retracing=True)
    def step(batch):
        with tf.GradientTape() as tape:
            both = tf.reshape(batch, [-1])
            vectors = encoder.encode_upper(tf.gather(hidden, both), tf.gather(mask, both), training=True, split=split)
            vectors = tf.reshape(vectors, [-1, 2, vectors.shape[-1]])
            logits = tf.matmul(vectors[:, 0], vectors[:, 1], transpose_b=True) / temperature
            same = tf.cast(tf.equal(batch[:, 1][None, :], batch[:, 1][:, None]), logits.dtype)
            logits += (same - tf.eye(tf.shape(batch)[0])) * -1e9
            labels = tf.range(tf.shape(batch)[0])
            loss = 0.5 * tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
                + tf.nn.sparse_softmax_cross_entropy_with_logits(labels, tf.transpose(logits)))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    rng = np.random.default_rng(seed)
    losses = []
    try:
        for number in range(steps):
            batch = pairs[rng.integers(0, len(pairs), batch_size)]
            losses.append(float(step(tf.constant(batch))))
            if number % 25 == 0 or number == steps - 1:
                logging.info("text adaptation step %d/%d: loss %.4f", number + 1, steps, losses[-1])
    finally:
        for layer in layers:
            layer.trainable = False
    item_tower.encode_catalogue()
    return losses
