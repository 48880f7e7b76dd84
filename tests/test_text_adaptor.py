"""The mixture-of-experts text adaptor: its arithmetic, its config, its place in the item tower."""

import numpy as np
import pytest
import tensorflow as tf

from tfrec.models import ItemTower
from tfrec.models.text_adaptor import MixtureOfExpertsAdaptor


def test_adaptor_is_the_gate_weighted_sum_of_whitened_projections():
    adaptor = MixtureOfExpertsAdaptor(output_dim=3, experts=4, seed=1)
    vectors = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    adaptor.build(vectors.shape)
    rng = np.random.default_rng(1)
    bias, gate = rng.normal(size=(4, 6)), rng.normal(size=(6, 4))
    adaptor.whitening_bias.assign(bias)
    adaptor.gate.assign(gate)
    kernels = adaptor.kernels.numpy()
    logits = vectors @ gate
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    expected = sum(weights[:, [k]] * ((vectors - bias[k]) @ kernels[k]) for k in range(4))
    np.testing.assert_allclose(adaptor(vectors).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_adaptor_config_round_trips_and_bad_expert_counts_are_named():
    adaptor = MixtureOfExpertsAdaptor(output_dim=8, experts=2, dropout=0.1, seed=3)
    assert MixtureOfExpertsAdaptor.from_config(adaptor.get_config()).get_config() == adaptor.get_config()
    with pytest.raises(ValueError, match="experts=0"):
        MixtureOfExpertsAdaptor(output_dim=8, experts=0)


def test_item_tower_with_the_moe_adaptor_embeds_catalogue_and_new_text_alike():
    texts = ["", "star wars. sci-fi", "amelie. comedy", "alien. horror"]
    tower = ItemTower(texts, embedding_dim=8, encoder={"source": "tiny", "sequence_length": 16},
                      use_item_ids=False, text_adaptor="moe", text_experts=3, seed=0)
    tower.build()
    assert isinstance(tower.text_projection, MixtureOfExpertsAdaptor)
    catalogue = tower.catalogue().numpy()
    from_text = tower.text_item_embeddings(tf.constant(texts[1:])).numpy()
    np.testing.assert_allclose(from_text, catalogue[1:], atol=1e-5)
    with pytest.raises(ValueError, match="text_adaptor='mlp'"):
        ItemTower(texts, encoder={"source": "tiny"}, text_adaptor="mlp")
