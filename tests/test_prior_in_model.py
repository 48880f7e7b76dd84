"""The transition prior inside the model: one score in process, in the export and in explanations; its weight
chosen on validation; and the export refusing a model below the baselines."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfrec import data as data_lib
from tfrec.exporting import exporter
from tfrec.models import ModelConfig, build_model
from tfrec.training import Trainer, TrainConfig

NUM_ITEMS = 200
TINY = dict(encoder="tiny", sequence_length=8, embedding_dim=16, history_layers=1, history_heads=2)


def chain_log(users=80, length=15, seed=0, num_items=NUM_ITEMS):
    """Users walking a ring of items (i -> i + 1 nine times in ten, else anywhere): transitions are strong
    evidence, which a network trained for a few steps has not learnt yet."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(users):
        item = int(rng.integers(num_items))
        for step in range(length):
            rows.append((f"u{user}", f"i{item}", 1_000 * user + step))
            item = (item + 1) % num_items if rng.random() < 0.9 else int(rng.integers(num_items))
    logs = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).drop_duplicates(["user_id", "item_id"])
    words = "red green blue tall short wide round flat soft loud".split()
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(num_items)],
                          "title": [f"{words[i % 10]} {words[(3 * i) % 10]} thing {i}" for i in range(num_items)]})
    return data_lib.from_dataframes(logs, items, history_length=10)


@pytest.fixture(scope="module")
def chain():
    return chain_log()


@pytest.fixture(scope="module")
def model(chain):
    model = build_model(ModelConfig(**TINY), chain)
    model.adapt(chain.training_examples())
    model.transition_prior.weight.assign(0.7)
    return model


def test_the_prior_is_part_of_every_score_the_model_ranks_by(model, chain):
    examples = {name: values[:16] for name, values in chain.examples["test"].items()}
    with_prior = model.score_catalogue(examples)
    prior = model.transition_prior
    expected = 0.7 * np.log1p(prior.evidence(examples["history_item_ids"]).numpy())
    prior.weight.assign(0.0)
    try:
        network = model.score_catalogue(examples)
    finally:
        prior.weight.assign(0.7)
    np.testing.assert_allclose((with_prior - network)[:, 1:], expected[:, 1:], atol=1e-4)
    assert np.abs(expected).max() > 0.5  # the chain's counts do move the scores


def test_in_process_recommend_equals_the_served_answer_with_the_prior(model, tmp_path):
    histories = [["i3", "i4", "i5"], ["i20"], ["i199", "i0"]]
    item_ids, scores = model.recommend(histories, k=5)
    assert item_ids[0][0] == "i6"  # the ring's next item
    result = exporter.export_model(model, str(tmp_path), "chain")
    served = exporter.load(result.path).signatures["serving_default"]
    padded = [[""] * (3 - len(h)) + h for h in histories]
    answer = served(history=tf.constant(padded), k=tf.constant([5] * 3))
    assert answer["item_ids"].numpy().astype(str).tolist() == item_ids.tolist()
    np.testing.assert_allclose(answer["scores"].numpy(), scores, atol=1e-5)


def test_explanations_attribute_the_prior_to_the_behaviours_that_carry_it(model):
    histories, candidates = [["i10", "i11", "i12"]], [["i13", "i2"]]
    for method in ("occlusion", "integrated_gradients"):
        influence, _ = model.explain(histories, candidates, method=method)
        model.transition_prior.weight.assign(0.0)
        try:
            without, _ = model.explain(histories, candidates, method=method)
        finally:
            model.transition_prior.weight.assign(0.7)
        prior_part = influence - without
        # i12 -> i13 is the ring's step: the most recent behaviour carries most of i13's prior.
        assert prior_part[0, 0, 2] > prior_part[0, 0, 0] > 0, method
        assert abs(prior_part[0, 1]).max() < 1e-4, method  # no evidence for i2 after these


def _fit(chain, run_dir, train_config=TrainConfig(epochs=1, batch_size=32, verbose=0, eval_ks=(10,)), **model_fields):
    trainer = Trainer(train_config)
    model = trainer.build_model(ModelConfig(**TINY, **model_fields), chain)
    return trainer.fit(model, chain, run_dir=str(run_dir)).metrics


def test_the_trainer_weighs_the_prior_on_validation(chain, tmp_path):
    metrics = _fit(chain, tmp_path / "run")
    prior = metrics["transition_prior"]
    assert prior["weight"] > 0 and set(prior["valid"]) == {"counts", "shares"}
    assert set(prior["valid"][prior["form"]]) >= {"0.0", str(prior["weight"])}
    assert metrics["valid"]["HR@10"] >= metrics["valid"]["baselines"]["transitions"]["HR@10"]


def test_the_export_refuses_a_model_below_a_baseline_unless_allowed(chain, tmp_path):
    run_dir = tmp_path / "weak"
    metrics = _fit(chain, run_dir, transition_prior="off")
    transitions = metrics["valid"]["baselines"]["transitions"]["HR@10"]
    assert metrics["valid"]["HR@10"] < transitions
    with pytest.raises(exporter.BelowBaselineError, match="transitions") as refused:
        exporter.export_run(str(run_dir), str(tmp_path / "exports"), "weak")
    assert f"{metrics['valid']['HR@10']:.4f}" in str(refused.value) and f"{transitions:.4f}" in str(refused.value)
    assert not (tmp_path / "exports" / "weak").exists() or not any((tmp_path / "exports" / "weak").iterdir())
    published = exporter.export_run(str(run_dir), str(tmp_path / "exports"), "weak",
                                    exporter.ExportOptions(allow_below_baseline=True))
    assert published.version == 1


def test_a_catalogue_smaller_than_the_default_cutoffs_trains_with_them_clipped(tmp_path):
    small = chain_log(users=30, length=12, num_items=60)
    metrics = _fit(small, tmp_path / "small", TrainConfig(epochs=1, batch_size=32, verbose=0))
    assert {"HR@10", "HR@60", "NDCG@60"} <= set(metrics) and "HR@100" not in metrics
    assert metrics["HR@60"] == 1.0  # every item ranked
