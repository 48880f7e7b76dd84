"""`MixtureOfExpertsAdaptor`: frozen text vectors -> item space, UniSRec's way.

UniSRec (Hou et al., KDD 2022) adapts frozen BERT vectors with a mixture of
parametric whitening experts: expert k maps `x` to `(x - b_k) W_k`, and a
softmax gate over `x` weighs the experts. Each expert can pick out a different
aspect of the text (brand, category, use), where one linear projection
must serve them all. `ItemTower(text_adaptor="moe")` uses it in place of
its single projection.

Example:

>>> adaptor = MixtureOfExpertsAdaptor(output_dim=4, experts=3)
>>> adaptor(tf.ones([2, 8])).shape
TensorShape([2, 4])
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfrec")
class MixtureOfExpertsAdaptor(keras.layers.Layer):
    """A softmax-gated mixture of whitening projections.

    Args:
        output_dim: size of the adapted vectors.
        experts: number of whitening experts.
        dropout: dropout on the input vectors during training.
        seed: initialisation and dropout seed.
        **kwargs: base layer arguments.

    Call args:
        vectors: float `[batch, input_dim]`.
        training: enables dropout.

    Returns:
        float32 `[batch, output_dim]`.
    """

    def __init__(self, output_dim: int, experts: int = 8, dropout: float = 0.0,
                 seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if experts < 1:
            raise ValueError(f"MixtureOfExpertsAdaptor.experts={experts}: expected at least 1")
        self.output_dim = output_dim
        self.experts = experts
        self.dropout = dropout
        self.seed = seed
        self.input_dropout = keras.layers.Dropout(dropout, seed=seed)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.whitening_bias = self.add_weight(
            shape=(self.experts, dim), initializer="zeros", name="whitening_bias")
        self.kernels = self.add_weight(
            shape=(self.experts, dim, self.output_dim),
            initializer=keras.initializers.GlorotUniform(seed=self.seed), name="kernels")
        # Zero gate weights start every expert at the same weight, as UniSRec does.
        self.gate = self.add_weight(shape=(dim, self.experts), initializer="zeros", name="gate")
        self.built = True

    def call(self, vectors, training=False):
        vectors = self.input_dropout(tf.convert_to_tensor(vectors, tf.float32), training=training)
        gates = tf.nn.softmax(tf.matmul(vectors, self.gate), axis=-1)  # [B, E]
        # (x - b_k) W_k = x W_k - b_k W_k, without materialising x - b_k per expert.
        projected = tf.einsum("bd,edo->beo", vectors, self.kernels)
        offsets = tf.einsum("ed,edo->eo", self.whitening_bias, self.kernels)
        return tf.einsum("be,beo->bo", gates, projected - offsets[None])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update({"output_dim": self.output_dim, "experts": self.experts,
                       "dropout": self.dropout, "seed": self.seed})
        return config
