"""Target events: purchases as targets with the clicks as context, in the split, the examples, the
exclusions, the loss and a whole run."""

import json
import pathlib

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfrec import data as data_lib
from tfrec.config import ConfigError
from tfrec.data import schema, splits
from tfrec.data.targets import TargetRule
from tfrec.evaluation.protocol import HeldOut
from tfrec.models import ModelConfig, Recommender, build_model
from tfrec.training import Trainer, TrainConfig

TINY = dict(encoder="tiny", sequence_length=8, embedding_dim=16, history_layers=1, history_heads=2)
NUM_ITEMS = 60


def shop_log(customers=40, sessions=4, seed=0):
    """Sessions of three clicks within a category of ten items, most ending in a purchase of a clicked item."""
    rng = np.random.default_rng(seed)
    rows = []
    for customer in range(customers):
        time = 1_700_000_000 + customer * 100_000
        for _ in range(sessions):
            category = int(rng.integers(NUM_ITEMS // 10))
            clicked = rng.choice(10, size=3, replace=False) + 10 * category
            for item in clicked:
                time += 60
                rows.append((f"c{customer}", f"s{item}", time, "click"))
            if rng.random() < 0.8:
                time += 60
                rows.append((f"c{customer}", f"s{int(rng.choice(clicked))}", time, "purchase"))
    logs = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event"])
    items = pd.DataFrame({"item_id": [f"s{i}" for i in range(NUM_ITEMS)],
                          "title": [f"category {i // 10} product {i}" for i in range(NUM_ITEMS)]})
    return logs, items


@pytest.fixture(scope="module")
def shop():
    logs, items = shop_log()
    return data_lib.from_dataframes(logs, items, history_length=8, target_events=("purchase",))


def test_leave_last_out_holds_out_the_last_two_targets_and_trains_on_what_precedes_them():
    users = np.array(["a"] * 7 + ["b"] * 2 + ["c"] * 3)
    targets = np.array([1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0], bool)
    parts = splits._leave_last_out(users, targets)
    # a: train target, context, valid target, context, test target, two context after it; b: no target;
    # c: one target only (test), the context before it trains.
    assert parts.tolist() == [0, 0, 1, 2, 2, 2, 2, 0, 0, 0, 2, 2]


def test_held_out_examples_are_purchases_with_clicks_in_their_histories(shop):
    for name in ("valid", "test"):
        events = np.asarray(shop.examples[name][schema.TARGET_EVENT])
        assert set(events.tolist()) == {shop.vocab.events.index("purchase")}
    assert len(shop.examples["test"][schema.TARGET_ITEM_ID]) == shop.split.test[schema.EVENT].eq("purchase").sum()
    history_events = np.asarray(shop.examples["test"][schema.HISTORY_EVENTS])
    assert (history_events == shop.vocab.events.index("click")).any()
    # Training keeps an example per behaviour: the loss picks the targets.
    assert len(shop.examples["train"][schema.TARGET_ITEM_ID]) == len(shop.split.train)


def test_rankings_exclude_what_was_bought_not_what_was_only_clicked(shop):
    held_out = HeldOut.from_data(shop, "test")
    assert held_out.excluded_history(held_out.examples) is None
    bought = set(shop.vocab.item_index(shop.tables.interactions.query("event == 'purchase'")[schema.ITEM_ID]))
    assert all(set(prior.tolist()) <= bought for prior in held_out.prior)
    every = data_lib.from_dataframes(*shop_log(), history_length=8, target_events=("purchase",),
                                     seen_exclusion="all")
    held_all = HeldOut.from_data(every, "test")
    assert held_all.excluded_history(held_all.examples) is not None
    assert sum(map(len, held_all.prior)) > sum(map(len, held_out.prior))


@pytest.mark.parametrize("fields, expected", [
    ({"target_events": ("buy",)}, "['buy'] not among the data's events ['click', 'purchase']"),
    ({"target_min_rating": 4.0}, "the data has no ratings"),
    ({"seen_exclusion": "clicked"}, "seen_exclusion"),
])
def test_a_rule_the_data_cannot_have_is_refused_by_name(fields, expected):
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        data_lib.from_dataframes(*shop_log(customers=5), history_length=8, **fields)


def test_the_loss_counts_only_target_positions_unless_context_is_weighted(shop):
    model = build_model(ModelConfig(task="retrieval", context_loss_weight=0.0, **TINY), shop)
    assert model.target_rule == TargetRule(("purchase",))
    train = shop.examples["train"]
    next_is_click = np.asarray(train[schema.TARGET_EVENT]) == shop.vocab.events.index("click")
    clicks = {name: np.asarray(values)[next_is_click][:16] for name, values in train.items()}
    # Histories of clicks only, predicting a click: nothing to learn from.
    clicks[schema.HISTORY_EVENTS] = np.where(clicks[schema.HISTORY_ITEM_IDS] > 0,
                                             shop.vocab.events.index("click"), 0).astype(np.int32)
    assert float(model.task_losses(clicks, training=True)["retrieval"]) == 0.0
    weighted = build_model(ModelConfig(task="retrieval", context_loss_weight=0.5, **TINY), shop)
    assert float(weighted.task_losses(clicks, training=True)["retrieval"]) > 0.0


def test_the_rule_is_saved_with_the_model(shop):
    model = build_model(ModelConfig(task="retrieval", **TINY), shop)
    restored = Recommender.from_config(model.get_config())
    assert restored.target_rule == model.target_rule


def test_a_purchase_run_reports_purchase_targets_beside_baselines_on_them(shop, tmp_path):
    trainer = Trainer(TrainConfig(epochs=2, batch_size=32, eval_ks=(10,), early_stopping_patience=0))
    model = trainer.build_model(ModelConfig(task="retrieval", **TINY), shop)
    result = trainer.fit(model, shop, run_dir=str(tmp_path / "run"))
    metrics = json.loads(pathlib.Path(result.run_dir, "metrics.json").read_text())
    summary = metrics["data_summary"]
    assert summary["target_rule"] == {"events": ["purchase"], "min_rating": None, "exclude": "targets"}
    assert summary["test_targets"] == len(shop.examples["test"][schema.TARGET_ITEM_ID]) < summary["test_interactions"]
    assert set(metrics["baselines"]) >= {"popularity", "transitions"}


def test_recommend_excludes_what_was_bought_in_process_and_served_alike(shop, tmp_path):
    from tfrec.exporting import exporter

    model = build_model(ModelConfig(task="retrieval", **TINY), shop)
    model.refresh_catalogue()
    everything = shop.vocab.num_items
    bought, clicked = shop.vocab.item_ids[1], shop.vocab.item_ids[2]
    history, events = [[bought, clicked]], [["purchase", "click"]]
    ids, _ = model.recommend(history, k=everything - 1, events=events)
    assert bought not in ids[0] and clicked in ids[0]
    ids, _ = model.recommend(history, k=everything - 2)  # no event types: every seen item is left out
    assert bought not in ids[0] and clicked not in ids[0]
    served = exporter.load(exporter.export_model(model, str(tmp_path), "shop").path).signatures["recommend_in_context"]
    answer = served(history=tf.constant(history), history_ratings=tf.zeros([1, 2]),
                    history_timestamps=tf.constant([[1, 2]], tf.int64), history_events=tf.constant(events),
                    timestamp=tf.constant([3], tf.int64), user_id=tf.constant(["c0"]), k=tf.constant([everything - 1]))
    in_process, _ = model.recommend(history, k=everything - 1, events=events, ratings=[[0.0, 0.0]],
                                    timestamps=[[1, 2]], now=[3], user_ids=["c0"])
    assert [item.decode() for item in answer["item_ids"].numpy()[0]] == list(in_process[0])


def test_a_behaviour_of_unknown_event_is_left_out_and_k_must_be_an_int32(shop):
    model = build_model(ModelConfig(task="retrieval", **TINY), shop)
    model.refresh_catalogue()
    bought, clicked = shop.vocab.item_ids[1], shop.vocab.item_ids[2]
    # A client that sends context but no event types fills them with "": such a behaviour may have been a purchase.
    ids, _ = model.recommend([[bought, clicked]], k=shop.vocab.num_items - 1, events=[["", "click"]])
    assert bought not in ids[0] and clicked in ids[0]
    with pytest.raises(ValueError, match="k="):
        model.recommend([[bought]], k=2**32 + 5)
