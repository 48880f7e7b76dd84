from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrec.data import schema
from tfrec.models import (ItemTower, ModelConfig, MultitaskModel, RankingModel, RetrievalModel,
                          RetrievalTask, build_model, verbalise_history)
from tfrec.models.item_tower import adapt_standardization
from tfrec.models.recommender import title_of

NUM_ITEMS = 24
NUM_USERS = 30
HISTORY = 6
WORDS = ["space", "love", "war", "crime", "music", "ghost", "horse", "robot"]


def synthetic(per_user=16, seed=0):
    """Users walk the catalogue in steps of 2; ratings depend on the item; a burst every 3."""
    rng = np.random.default_rng(seed)
    columns = {name: [] for name in (
        schema.USER_INDEX, schema.HISTORY_ITEM_IDS, schema.HISTORY_RATINGS, schema.HISTORY_EVENTS,
        schema.HISTORY_TIMESTAMPS, schema.HISTORY_LENGTH, schema.TARGET_ITEM_ID, schema.TARGET_RATING,
        schema.TARGET_EVENT, schema.TARGET_TIMESTAMP, schema.LABEL)}
    for user in range(1, NUM_USERS + 1):
        start = int(rng.integers(0, NUM_ITEMS))
        items = [(start + 2 * t) % NUM_ITEMS + 1 for t in range(per_user)]
        ratings = [float(1 + item % 5) for item in items]
        times = [10_000 + 3600 * (t // 3) for t in range(per_user)]
        for t in range(per_user):
            lo = max(0, t - HISTORY)
            pad = HISTORY - (t - lo)
            columns[schema.USER_INDEX].append(user)
            columns[schema.HISTORY_ITEM_IDS].append([0] * pad + items[lo:t])
            columns[schema.HISTORY_RATINGS].append([0.0] * pad + ratings[lo:t])
            columns[schema.HISTORY_EVENTS].append([0] * pad + [1] * (t - lo))
            columns[schema.HISTORY_TIMESTAMPS].append([0] * pad + times[lo:t])
            columns[schema.HISTORY_LENGTH].append(t - lo)
            columns[schema.TARGET_ITEM_ID].append(items[t])
            columns[schema.TARGET_RATING].append(ratings[t])
            columns[schema.TARGET_EVENT].append(1)
            columns[schema.TARGET_TIMESTAMP].append(times[t])
            columns[schema.LABEL].append(ratings[t])
    dtypes = {schema.HISTORY_RATINGS: np.float32, schema.TARGET_RATING: np.float32,
              schema.LABEL: np.float32, schema.HISTORY_TIMESTAMPS: np.int64,
              schema.TARGET_TIMESTAMP: np.int64}
    return {name: np.asarray(values, dtypes.get(name, np.int32)) for name, values in columns.items()}


EXAMPLES = synthetic()
VOCAB = SimpleNamespace(num_items=NUM_ITEMS, num_users=NUM_USERS, events=["", "rating"])
TEXTS = [""] + [f"{WORDS[i % 8]} {WORDS[(i // 8) % 8]} ({1990 + i}). genre {WORDS[i % 3]}"
                for i in range(1, NUM_ITEMS + 1)]


def config(**overrides):
    values = dict(encoder="tiny", embedding_dim=16, sequence_length=12, history_heads=2, dropout=0.0)
    values.update(overrides)
    return ModelConfig(**values)


def train(model, epochs=6, learning_rate=1e-2, batch_size=16):
    rows = model.train_examples(EXAMPLES)
    dataset = tf.data.Dataset.from_tensor_slices(rows).shuffle(512, seed=0).batch(batch_size, drop_remainder=True)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return model.fit(dataset, epochs=epochs, verbose=0).history


def head(features, rows):
    return {name: value[:rows] for name, value in features.items()}


@pytest.mark.parametrize("overrides", [
    dict(),
    dict(softmax="in_batch", logq_correction=True, hard_negatives=4, use_user_ids=True,
         sequence_training=False),
    dict(encoder_trainable="top:1", use_ratings=True, use_time_gaps=True, id_dropout=0.3),
    dict(history_encoder="attention", use_text=False),
    dict(history_encoder="mean", use_text=False),
], ids=["full-softmax", "in-batch", "top1-ratings-gaps", "attention", "mean"])
def test_retrieval_trains_and_loss_falls(overrides):
    model = build_model(config(task="retrieval", **overrides), VOCAB, TEXTS)
    assert isinstance(model, RetrievalModel)
    batch = {name: tf.convert_to_tensor(value) for name, value in head(EXAMPLES, 64).items()}
    before = float(model(batch, training=False)["retrieval"])
    history = train(model)
    assert history["retrieval_loss"][-1] < history["retrieval_loss"][0]
    # Inference-mode loss: every item recomputed, no dropout, nothing cached.
    assert float(model(batch, training=False)["retrieval"]) < 0.8 * before


def test_retrieval_learns_the_walk_and_recommends_unseen_items():
    model = build_model(config(task="retrieval", use_text=False), VOCAB, TEXTS)
    train(model, epochs=10)
    test = head(EXAMPLES, 60)
    scores = model.score_catalogue(test)
    assert scores.shape == (60, NUM_ITEMS + 1)
    assert np.all(scores[:, 0] < -1e8)
    has_history = test[schema.HISTORY_LENGTH] > 0
    top = np.argmax(scores[:, 1:], axis=1) + 1
    assert np.mean(top[has_history] == test[schema.TARGET_ITEM_ID][has_history]) > 0.5
    _, ids = model.recommend(test, k=5)
    ids = ids.numpy()
    for row in range(60):
        seen = set(test[schema.HISTORY_ITEM_IDS][row]) | {0}
        assert not seen & set(ids[row])
        masked = scores[row].copy()
        masked[list(seen)] = -np.inf
        assert ids[row][0] == int(np.argmax(masked))


def test_ranking_rating_with_dcn_trains_and_predicts():
    model = build_model(config(task="ranking", dcn_layers=2, use_user_ids=True), VOCAB, TEXTS)
    assert isinstance(model, RankingModel)
    history = train(model, epochs=8)
    assert history["ranking_loss"][-1] < 0.5 * history["ranking_loss"][0]
    test = head(EXAMPLES, 80)
    predictions = model.predict_target(test)
    has_history = test[schema.HISTORY_LENGTH] > 0
    rmse = np.sqrt(np.mean((predictions - test[schema.TARGET_RATING])[has_history] ** 2))
    assert rmse < np.std(test[schema.TARGET_RATING])


def test_ranking_click_trains():
    model = build_model(config(task="ranking", ranking_target="click", use_text=False), VOCAB, TEXTS)
    history = train(model, epochs=10)
    assert history["ranking_loss"][-1] < 0.9 * history["ranking_loss"][0]
    probabilities = model.predict_target(head(EXAMPLES, 20))
    assert np.all((probabilities > 0) & (probabilities < 1))


def test_multitask_with_behaviour_text_trains_both_heads():
    model = build_model(config(task="multitask", behaviour_text=True, behaviour_text_items=3,
                               behaviour_text_length=32, encoder_trainable="top:1",
                               ranking_weight=0.5), VOCAB, TEXTS)
    assert isinstance(model, MultitaskModel)
    history = train(model, epochs=3, learning_rate=5e-3)
    assert history["ranking_loss"][-1] < history["ranking_loss"][0]
    assert history["retrieval_loss"][-1] < history["retrieval_loss"][0]
    texts = model.behaviour_tower.texts({"item_ids": tf.constant(EXAMPLES[schema.HISTORY_ITEM_IDS][:2]),
                                          "ratings": tf.constant(EXAMPLES[schema.HISTORY_RATINGS][:2])})
    queries = model.text_query_embeddings(texts).numpy()
    np.testing.assert_allclose(queries, model.query_embeddings(head(EXAMPLES, 2)).numpy(), atol=1e-5)


def test_item_tower_top1_trains_only_the_top_layer_on_cached_states():
    tower = ItemTower(TEXTS, embedding_dim=8, encoder={"source": "tiny", "sequence_length": 12,
                                                       "trainable": "top:1"})
    tower(tf.constant([1]))
    assert tower._mode == "hidden"
    names = [v.path for v in tower.trainable_weights]
    assert any("transformer_layer_1/" in name for name in names)
    assert not any("transformer_layer_0/" in name or "token_embedding" in name for name in names)


def test_cold_items_get_text_embeddings_that_match_the_catalogue_path():
    tower = ItemTower(TEXTS, embedding_dim=8, encoder={"source": "tiny", "sequence_length": 12},
                      use_item_ids=False)
    catalogue = tower.catalogue().numpy()
    from_text = tower.text_item_embeddings(tf.constant(TEXTS[1:5])).numpy()
    np.testing.assert_allclose(from_text, catalogue[1:5], atol=1e-5)
    new = tower.text_item_embeddings(tf.constant(["a brand new robot film (2030)"])).numpy()
    assert new.shape == (1, 8) and abs(np.linalg.norm(new) - 1) < 1e-5


def test_standardization_does_not_stretch_a_constant_text_dimension():
    # Sentence encoders have near-constant dimensions; a fine-tuned encoder
    # moves them by ~1e-6, which must not change the standardised vector.
    vectors = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    vectors[:, 3] = 0.25
    norm = keras.layers.Normalization()
    adapt_standardization(norm, vectors)
    nudged = vectors.copy()
    nudged[:, 3] += 1e-6
    assert np.abs(norm(nudged).numpy() - norm(vectors).numpy()).max() < 1e-3
    np.testing.assert_allclose(np.std(norm(vectors).numpy()[:, :3], axis=0), 1.0, atol=1e-3)


def test_training_catalogue_does_not_reveal_which_items_were_refreshed():
    tower = ItemTower(TEXTS, embedding_dim=8, refresh_items=2,
                      encoder={"source": "tiny", "sequence_length": 12, "trainable": "top:1"})
    bank = tower.text_bank.numpy()
    with tf.GradientTape() as tape:
        trained = tower.catalogue(training=True, focus_ids=tf.constant([1, 2]))
        loss = tf.reduce_sum(trained[1:3])
    from_bank = tower._embed_unique(tf.range(len(TEXTS)), training=False, text_vectors=tf.constant(bank))
    np.testing.assert_allclose(trained.numpy(), from_bank.numpy(), atol=1e-6)  # refreshed items read from the bank too
    top_layer = tower.text_encoder.backbone.transformer_layers[-1].trainable_weights
    assert any(float(tf.reduce_sum(tf.abs(g))) > 0 for g in tape.gradient(loss, top_layer) if g is not None)
    changed = np.abs(tower.text_bank.numpy() - bank).max(axis=1) > 0
    assert changed[1] and changed[2] and not changed[3:].any()  # the bank took the fresh vectors


def test_text_trained_model_ranks_cold_items_from_text():
    """Items never seen in training are scored through their text."""
    model = build_model(config(task="retrieval", id_dropout=0.5, encoder_trainable="top:1"), VOCAB, TEXTS)
    train(model, epochs=3)
    cold = model.text_item_embeddings(tf.constant(TEXTS[1:])).numpy()
    assert cold.shape == (NUM_ITEMS, 16)
    np.testing.assert_allclose(np.linalg.norm(cold, axis=1), 1.0, rtol=1e-5)


def test_items_absent_from_training_are_embedded_from_text_alone():
    model = build_model(config(task="retrieval"), VOCAB, TEXTS)
    held_out = EXAMPLES[schema.TARGET_ITEM_ID] == 5
    rows = {name: value[~held_out] for name, value in EXAMPLES.items()}
    rows[schema.HISTORY_ITEM_IDS] = np.where(rows[schema.HISTORY_ITEM_IDS] == 5, 0,
                                             rows[schema.HISTORY_ITEM_IDS])
    model.train_examples(rows)
    model.refresh_catalogue()
    stored = model.item_embeddings(tf.constant([1, 5])).numpy()
    from_text = model.text_item_embeddings(tf.constant([TEXTS[1], TEXTS[5]])).numpy()
    np.testing.assert_allclose(stored[1], from_text[1], atol=1e-5)  # untrained id left out
    assert np.abs(stored[0] - from_text[0]).max() > 1e-3  # trained items keep their id embedding


@pytest.mark.parametrize("task", ["retrieval", "ranking"])
def test_model_get_config_round_trip(task):
    model = build_model(config(task=task, use_ratings=True), VOCAB, TEXTS)
    restored = type(model).from_config(model.get_config())
    restored.set_weights(model.get_weights())
    assert restored.get_config() == model.get_config()
    test = head(EXAMPLES, 10)
    if task == "retrieval":
        np.testing.assert_allclose(restored.score_catalogue(test), model.score_catalogue(test), atol=1e-5)
    else:
        np.testing.assert_allclose(restored.predict_target(test), model.predict_target(test), atol=1e-5)


def test_layer_get_config_round_trips():
    task = RetrievalTask("in_batch", 0.05, True, False, 3)
    assert RetrievalTask.from_config(task.get_config()).get_config() == task.get_config()


def test_sequence_training_keeps_non_overlapping_windows():
    model = build_model(config(task="retrieval", use_text=False), VOCAB, TEXTS)
    rows = model.train_examples(EXAMPLES)
    # 16 rows per user, windows of 6: rows 15, 9, 3 per user.
    assert len(rows[schema.USER_INDEX]) == 3 * NUM_USERS
    covered = set()
    for hist, target, user in zip(rows[schema.HISTORY_ITEM_IDS], rows[schema.TARGET_ITEM_ID],
                                  rows[schema.USER_INDEX]):
        covered |= {(user, item) for item in list(hist[1:]) + [target] if item}
    every = {(u, t) for u, t, n in zip(EXAMPLES[schema.USER_INDEX], EXAMPLES[schema.TARGET_ITEM_ID],
                                       EXAMPLES[schema.HISTORY_LENGTH]) if n > 0}
    assert every <= covered
    assert np.isclose(np.exp(model.item_log_probability.numpy()).sum(), 1.0, atol=1e-4)


def test_verbalise_history_most_recent_first():
    titles = tf.constant(["", "Heat (1995)", "Up (2009)", "Jaws (1975)"])
    texts = verbalise_history(titles, tf.constant([[0, 1, 2, 3]]), tf.constant([[0.0, 2.0, 0.0, 5.0]]), 3)
    assert texts.numpy()[0].decode() == "rated 5: Jaws (1975); watched: Up (2009); rated 2: Heat (1995)"
    assert title_of("Mr. Holland's Opus (1995). Drama. A teacher") == "Mr. Holland's Opus (1995)"


@pytest.mark.parametrize("overrides, message", [
    (dict(task="search"), "task='search'"),
    (dict(use_text=False, use_item_ids=False), "use_text and use_item_ids"),
    (dict(embedding_dim=30, history_heads=4), "divisible"),
    (dict(dropout=1.5), "dropout=1.5"),
    (dict(temperature=0.0), "temperature"),
])
def test_bad_config_is_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_model(config(**overrides), VOCAB, TEXTS)


def test_wrong_catalogue_size_is_named():
    with pytest.raises(ValueError, match="expected num_items \\+ 1"):
        build_model(config(), VOCAB, TEXTS[:-1])


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown fields \\['colour'\\]"):
        ModelConfig.from_dict({"colour": "red"})
    assert ModelConfig.from_dict(config().to_dict()) == config()


def test_items_absent_from_training_are_no_full_softmax_negatives():
    model = build_model(config(task="retrieval", use_text=False), VOCAB, TEXTS)
    held_out = EXAMPLES[schema.TARGET_ITEM_ID] == 5
    rows = {name: value[~held_out] for name, value in EXAMPLES.items()}
    rows[schema.HISTORY_ITEM_IDS] = np.where(rows[schema.HISTORY_ITEM_IDS] == 5, 0,
                                             rows[schema.HISTORY_ITEM_IDS])
    model.train_examples(rows)
    mask = model.trained_items.numpy()
    assert mask[5] == 0 and mask[0] == 0 and mask[1:5].min() == 1
    task = model.retrieval_task
    queries = tf.math.l2_normalize(tf.random.normal([3, 16]), axis=-1)
    logits, _ = task.logits(queries, tf.constant([1, 2, 3]), model.item_tower.catalogue(),
                            model.item_log_probability, model.trained_items)
    assert np.all(logits.numpy()[:, [0, 5]] < -1e8)


def test_in_batch_logits_mask_accidental_hits():
    task = RetrievalTask("in_batch", temperature=1.0, remove_accidental_hits=True)
    catalogue = tf.math.l2_normalize(tf.random.normal([6, 4]), axis=-1)
    logits, labels = task.logits(catalogue[1:4], tf.constant([1, 2, 1]), catalogue, tf.zeros([6]))
    logits = logits.numpy()
    assert logits[0, 2] < -1e8 and logits[2, 0] < -1e8  # same item, other row
    assert logits[0, 0] > -2 and logits[0, 1] > -2


def test_load_run_restores_the_trained_model(tmp_path):
    from tfrec import data
    from tfrec.models.run import load_run
    from tfrec.training import run_dir

    ds = data.load("synthetic:users=12,items=20,per_user=8")
    vocab = data.Vocabulary.from_data(ds)
    texts = data.item_texts(ds.items, vocab)
    cfg = config(task="retrieval")
    model = build_model(cfg, vocab, texts)
    run_dir.write_json_atomic(str(tmp_path / run_dir.CONFIG), {"model_config": cfg.to_dict(), "flags": {}})
    run_dir.write_text_atomic(str(tmp_path / run_dir.VOCABULARY), vocab.to_json())
    run_dir.write_text_atomic(str(tmp_path / run_dir.ITEMS), run_dir.items_jsonl(vocab, texts))
    run_dir.save_weights_atomic(model, str(tmp_path / run_dir.WEIGHTS))
    run = load_run(str(tmp_path))
    assert run.config == cfg and run.item_texts == texts
    np.testing.assert_allclose(run.model.item_embeddings(tf.range(1, 5)).numpy(),
                               model.item_tower.catalogue().numpy()[1:5], atol=1e-6)


def test_fine_tuned_text_re_encodes_only_refresh_items_per_step():
    tower = ItemTower(TEXTS, embedding_dim=8, encoder={"source": "tiny", "sequence_length": 12,
                                                       "trainable": "top:1"}, refresh_items=3)
    exact = tower.catalogue().numpy()
    bank = tower.text_bank.numpy().copy()
    with tf.GradientTape() as tape:
        catalogue = tower.catalogue(training=True, focus_ids=tf.constant([2, 4, 4, 6, 8, 10]))
        loss = tf.reduce_sum(catalogue * exact)
    layer_grads = [g for g, v in zip(tape.gradient(loss, tower.trainable_weights), tower.trainable_weights)
                   if "transformer_layer_1" in v.path]
    assert layer_grads and all(g is not None for g in layer_grads)
    changed = np.flatnonzero(np.abs(tower.text_bank.numpy() - bank).sum(axis=1) > 0)
    assert len(changed) <= 3 and set(changed) <= {2, 4, 6, 8, 10}
    np.testing.assert_allclose(catalogue.numpy()[1], exact[1], atol=1e-5)  # not refreshed: bank row


def test_full_softmax_query_exclusions_drop_earlier_items_but_keep_the_positive():
    task = RetrievalTask("full", temperature=1.0)
    catalogue = tf.math.l2_normalize(tf.random.normal([6, 4]), axis=-1)
    exclusions = tf.constant([[0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]], tf.float32)
    logits, _ = task.logits(catalogue[1:3], tf.constant([2, 3]), catalogue, tf.zeros([6]),
                            query_exclusions=exclusions)
    logits = logits.numpy()
    assert logits[0, 1] < -1e8  # met earlier: no negative
    assert logits[0, 2] > -2  # the positive itself stays
    assert logits[1].min() < -1e8 and (logits[1, 1:] > -2).all()  # only padding masked


def test_exclude_seen_changes_the_loss_only_by_removing_earlier_items():
    base = build_model(config(task="retrieval", use_text=False), VOCAB, TEXTS)
    masked = build_model(config(task="retrieval", use_text=False, exclude_seen=True), VOCAB, TEXTS)
    masked.set_weights(base.get_weights())
    batch = {name: tf.convert_to_tensor(value[:4]) for name, value in EXAMPLES.items()}
    plain, excluded = base(batch, training=False)["retrieval"], masked(batch, training=False)["retrieval"]
    assert float(excluded) < float(plain)  # fewer negatives, lower cross-entropy
