"""Behaviour-aware text adaptation: pairs from training sequences, the encoder learns them, runs resume."""

import numpy as np
import pandas as pd
import pytest

import tfrec
from tfrec.config import ConfigError
from tfrec.data import Vocabulary
from tfrec.training import text_adaptation

SOURCE = "synthetic:users=60,items=120,per_user=20,seed=0"


@pytest.fixture(scope="module")
def data():
    return tfrec.data.prepare(tfrec.data.DataConfig(source=SOURCE, history_length=20))


def _model(data, **fields):
    config = dict(encoder="tiny", sequence_length=16, embedding_dim=32, history_layers=1)
    return tfrec.models.build_model(tfrec.models.ModelConfig(**{**config, **fields}), data)


def test_cooccurrence_pairs_follow_each_user_within_the_window():
    logs = pd.DataFrame({"user_id": ["a", "a", "a", "b", "b"], "item_id": ["1", "2", "1", "3", "2"]})
    vocab = Vocabulary(["1", "2", "3"], ["a", "b"], [])
    pairs = text_adaptation.cooccurrence_pairs(logs, vocab, window=2)
    # distance 1: a (1,2), (2,1); b (3,2); distance 2: a (1,1) is the same item: dropped.
    assert sorted(map(tuple, pairs.tolist())) == [(1, 2), (2, 1), (3, 2)]
    assert len(text_adaptation.cooccurrence_pairs(logs, vocab, window=1)) == 3


def _pair_margin(vectors, pairs, seed=0):
    """Mean cosine of co-occurring pairs minus that of random pairs."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    random = np.random.default_rng(seed).integers(1, len(unit), size=pairs.shape)
    cosine = lambda p: np.mean(np.sum(unit[p[:, 0]] * unit[p[:, 1]], axis=1))  # noqa: E731
    return cosine(pairs) - cosine(random)


def test_adaptation_moves_cooccurring_items_closer(data):
    model = _model(data)
    pairs = text_adaptation.cooccurrence_pairs(data.split.train, data.vocab, window=3)
    before = model.item_tower.text_vectors.numpy().copy()
    losses = text_adaptation.adapt_item_text(model.item_tower, pairs, steps=200, layers=2, batch_size=32,
                                             learning_rate=3e-3, length=16)
    after = model.item_tower.text_vectors.numpy()
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    assert _pair_margin(after, pairs) > _pair_margin(before, pairs) + 0.005
    # The encoder is frozen again afterwards.
    assert not any(layer.trainable for layer in model.item_tower.text_encoder.backbone.transformer_layers)


def test_trainer_adapts_the_text_then_trains_and_the_run_reloads_the_adapted_vectors(data, tmp_path):
    model = _model(data)
    before = model.item_tower.text_vectors.numpy().copy()
    config = tfrec.TrainConfig(epochs=1, batch_size=32, verbose=0, text_adaptation_steps=5, text_adaptation_length=16)
    result = tfrec.Trainer(config).fit(model, data, run_dir=str(tmp_path / "run"))
    adapted = model.item_tower.text_vectors.numpy()
    assert not np.allclose(adapted, before) and np.isfinite(result.metrics["HR@10"])
    run = tfrec.training.load_run(str(tmp_path / "run"))
    np.testing.assert_allclose(run.model.item_tower.text_vectors.numpy(), adapted, atol=1e-6)
    ids, _ = run.model.recommend([[data.vocab.item_ids[1]]], k=3)
    assert ids.shape == (1, 3)


@pytest.mark.parametrize("fields, message", [
    ({"use_text": False}, "needs ModelConfig.use_text=True"),
    ({"encoder_trainable": "top:1"}, "encoder_trainable='none'"),
])
def test_adaptation_needs_a_frozen_text_encoder(data, fields, message):
    config = tfrec.TrainConfig(epochs=1, batch_size=32, verbose=0, text_adaptation_steps=5)
    with pytest.raises(ConfigError, match=message):
        tfrec.Trainer(config).fit(_model(data, **fields), data)


def test_adaptation_settings_are_checked():
    with pytest.raises(ConfigError, match="TrainConfig.text_adaptation_layers=0"):
        tfrec.TrainConfig(text_adaptation_layers=0).validate()
