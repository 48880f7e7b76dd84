"""Integration: export a retrieval model on the pretrained MiniLM encoder.

Checks what only the real encoder shows: the export is not much larger than
the weights (nothing saved twice) and its graph uses core TensorFlow and
TF Text ops only.
"""

from types import SimpleNamespace

import pytest

from tfrec import data
from tfrec.exporting import exporter
from tfrec.models import ModelConfig, build_model

pytestmark = pytest.mark.integration

NUM_ITEMS = 300


def test_minilm_export_is_at_most_1_2x_the_weights_with_servable_ops(ml100k_dir, tmp_path):
    ds = data.load(f"movielens:{ml100k_dir}")
    full = data.Vocabulary.from_data(ds)
    vocab = data.Vocabulary(full.item_ids[1:NUM_ITEMS + 1], full.user_ids[1:], full.events[1:])
    texts = data.item_texts(ds.items, full)[:NUM_ITEMS + 1]
    titles = data.item_titles(ds.items, full)[:NUM_ITEMS + 1]
    catalogue = SimpleNamespace(vocab=vocab, item_texts=texts, item_titles=titles, rating_mean=3.5)
    model = build_model(ModelConfig(task="retrieval", encoder="minilm", sequence_length=32), catalogue)

    result = exporter.export_model(model, str(tmp_path), "minilm")

    print(result.size.summary())
    print(result.ops.summary())
    assert result.size.weights_bytes > 80e6  # the 22.7M-parameter encoder is in
    assert result.size.total_bytes <= 1.2 * result.size.weights_bytes
    assert result.size.state_ratio <= 1.01
    assert not result.ops.other_ops
    assert {"FastWordpieceTokenizeWithOffsets", "TFText>RoundRobinTrim"} <= set(result.ops.text_ops)
    loaded = exporter.load(result.path)
    out = loaded.signatures["recommend_from_text"](text=[texts[1]], k=[3])
    assert out["item_ids"].shape == (1, 3)
    history = [vocab.item_ids[1:4]]
    ids, scores = model.recommend(history, k=5)
    served = loaded.signatures["recommend"](history=history, k=[5])
    assert served["item_ids"].numpy().astype(str).tolist() == ids.tolist()
    assert abs(served["scores"].numpy() - scores).max() < 1e-5
