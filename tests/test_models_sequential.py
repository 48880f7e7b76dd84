from types import SimpleNamespace

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfrec import data
from tfrec.config import ConfigError
from tfrec.data import schema
from tfrec.models import (ItemTower, ModelConfig, Recommender, RetrievalTask, build_model, history_features,
                          verbalise_history)
from tfrec.models import item_tower
from tfrec.models.item_tower import adapt_standardization

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
# Item ids "i1".."i24" (index = number), users "u1".."u30", one event type (index 1).
VOCAB = data.Vocabulary([f"i{i}" for i in range(1, NUM_ITEMS + 1)], [f"u{u}" for u in range(1, NUM_USERS + 1)],
                        ["rating"])
TITLES = [""] + [f"{WORDS[i % 8]} {WORDS[(i // 8) % 8]} ({1990 + i})" for i in range(1, NUM_ITEMS + 1)]
TEXTS = [""] + [f"{TITLES[i]}. genre {WORDS[i % 3]}" for i in range(1, NUM_ITEMS + 1)]
# What `build_model` reads of a `tfrec.data.PreparedData`.
DATA = SimpleNamespace(vocab=VOCAB, item_texts=TEXTS, item_titles=TITLES, rating_mean=3.5)


def config(**overrides):
    values = dict(encoder="tiny", embedding_dim=16, sequence_length=12, history_heads=2, dropout=0.0)
    values.update(overrides)
    return ModelConfig(**values)


def train(model, epochs=6, learning_rate=1e-2, batch_size=16):
    model.adapt(EXAMPLES)
    rows = model.train_examples(EXAMPLES)
    dataset = tf.data.Dataset.from_tensor_slices(rows).shuffle(512, seed=0).batch(batch_size, drop_remainder=True)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return model.fit(dataset, epochs=epochs, verbose=0).history


def head(features, rows):
    return {name: value[:rows] for name, value in features.items()}


def tensors(features):
    return {name: tf.convert_to_tensor(value) for name, value in features.items()}


def id_histories(features):
    """The histories of schema features as `recommend` takes them: item id strings, padding dropped."""
    return [[VOCAB.item_ids[i] for i in row if i] for row in features[schema.HISTORY_ITEM_IDS]]


@pytest.mark.parametrize("overrides", [
    dict(),
    dict(softmax="in_batch", logq_correction=True, hard_negatives=4, use_user_ids=True,
         sequence_training=False),
    dict(encoder_trainable="top:1", use_ratings=True, use_time_gaps=True, id_dropout=0.3),
    dict(history_encoder="attention", use_text=False),
    dict(history_encoder="mean", use_text=False),
    dict(use_item_ids=False),
], ids=["full-softmax", "in-batch", "top1-ratings-gaps", "attention", "mean", "text-only"])
def test_retrieval_trains_and_loss_falls(overrides):
    model = build_model(config(task="retrieval", **overrides), DATA)
    assert isinstance(model, Recommender) and model.has_retrieval and not model.has_ranking
    assert isinstance(model.retrieval_task, RetrievalTask) and model.ranking_task is None
    batch = tensors(head(EXAMPLES, 64))
    before = float(model.task_losses(batch, training=False)["retrieval"])
    history = train(model)
    assert history["retrieval_loss"][-1] < history["retrieval_loss"][0]
    # Inference-mode loss: every item recomputed, no dropout, nothing cached.
    assert float(model.task_losses(batch, training=False)["retrieval"]) < 0.8 * before


def test_retrieval_learns_the_walk_and_recommends_unseen_items():
    model = build_model(config(task="retrieval", use_text=False), DATA)
    train(model, epochs=10)
    test = head(EXAMPLES, 60)
    scores = model.score_catalogue(test)
    assert scores.shape == (60, NUM_ITEMS + 1)
    assert np.all(scores[:, 0] < -1e8)
    has_history = test[schema.HISTORY_LENGTH] > 0
    top = np.argmax(scores[:, 1:], axis=1) + 1
    assert np.mean(top[has_history] == test[schema.TARGET_ITEM_ID][has_history]) > 0.5
    ids, top_scores = model.recommend(id_histories(test), k=5)
    assert ids.shape == (60, 5) and top_scores.shape == (60, 5)
    for row in range(60):
        seen = set(test[schema.HISTORY_ITEM_IDS][row]) | {0}
        assert not {VOCAB.item_ids[i] for i in seen} & set(ids[row])
        masked = scores[row].copy()
        masked[list(seen)] = -np.inf
        assert ids[row][0] == VOCAB.item_ids[int(np.argmax(masked))]
        np.testing.assert_allclose(top_scores[row], -np.sort(-masked)[:5], atol=1e-5)


def test_ranking_rating_with_dcn_trains_and_predicts():
    model = build_model(config(task="ranking", dcn_layers=2, use_user_ids=True), DATA)
    assert isinstance(model, Recommender) and model.has_ranking and not model.has_retrieval
    history = train(model, epochs=8)
    assert history["ranking_loss"][-1] < 0.5 * history["ranking_loss"][0]
    test = head(EXAMPLES, 80)
    predictions = model.predict_target(test)
    has_history = test[schema.HISTORY_LENGTH] > 0
    rmse = np.sqrt(np.mean((predictions - test[schema.TARGET_RATING])[has_history] ** 2))
    assert rmse < np.std(test[schema.TARGET_RATING])


def test_ranking_click_trains():
    model = build_model(config(task="ranking", ranking_target="click", use_text=False), DATA)
    history = train(model, epochs=10)
    assert history["ranking_loss"][-1] < 0.9 * history["ranking_loss"][0]
    probabilities = model.predict_target(head(EXAMPLES, 20))
    assert np.all((probabilities > 0) & (probabilities < 1))


def test_multitask_with_behaviour_text_trains_both_heads():
    model = build_model(config(task="multitask", behaviour_text=True, behaviour_text_items=3,
                               behaviour_text_length=32, encoder_trainable="top:1",
                               ranking_weight=0.5), DATA)
    assert isinstance(model, Recommender) and model.has_ranking and model.has_retrieval
    history = train(model, epochs=3, learning_rate=5e-3)
    assert history["ranking_loss"][-1] < history["ranking_loss"][0]
    assert history["retrieval_loss"][-1] < history["retrieval_loss"][0]
    model.refresh_catalogue()
    texts = model.behaviour_tower.texts({"item_ids": tf.constant(EXAMPLES[schema.HISTORY_ITEM_IDS][:2]),
                                          "ratings": tf.constant(EXAMPLES[schema.HISTORY_RATINGS][:2])})
    # The behaviour text names the items by the data's titles, not their full texts.
    last = int(EXAMPLES[schema.HISTORY_ITEM_IDS][1][-1])
    assert texts.numpy()[1].decode().startswith(f"rated {EXAMPLES[schema.HISTORY_RATINGS][1][-1]:g}: {TITLES[last]}")
    assert "genre" not in texts.numpy()[1].decode()
    queries = model.text_query_embeddings(texts).numpy()
    np.testing.assert_allclose(queries, model.query_embeddings(head(EXAMPLES, 2)).numpy(), atol=1e-5)


def test_item_tower_top1_trains_only_the_top_layer_on_cached_states():
    tower = ItemTower(TEXTS, embedding_dim=8, encoder={"source": "tiny", "sequence_length": 12,
                                                       "trainable": "top:1"})
    tower.build()
    tower(tf.constant([1]))
    assert tower._mode == "hidden"
    names = [v.path for v in tower.trainable_weights]
    assert any("transformer_layer_1/" in name for name in names)
    assert not any("transformer_layer_0/" in name or "token_embedding" in name for name in names)


def test_token_states_of_a_catalogue_too_large_for_memory_are_refused_by_name(monkeypatch):
    def tower():
        return ItemTower(TEXTS, embedding_dim=8, encoder={"source": "tiny", "sequence_length": 64,
                                                          "trainable": "top:1"})

    longest = tower().catalogue_tokens()["padding_mask"].shape[1]
    assert longest < 64
    monkeypatch.setattr(item_tower, "MAX_TOKEN_STATE_BYTES", len(TEXTS) * 32 * 4 * longest - 1)
    with pytest.raises(ConfigError, match=rf"ModelConfig.encoder_trainable='top:1'.*25 item texts of up to {longest} tokens"):
        tower().build()
    monkeypatch.setattr(item_tower, "MAX_TOKEN_STATE_BYTES", len(TEXTS) * 32 * 4 * longest)  # padded to the longest
    tower().build()


def test_cold_items_get_text_embeddings_that_match_the_catalogue_path():
    tower = ItemTower(TEXTS, embedding_dim=8, encoder={"source": "tiny", "sequence_length": 12},
                      use_item_ids=False)
    tower.build()
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
    tower.build()
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
    model = build_model(config(task="retrieval", id_dropout=0.5, encoder_trainable="top:1"), DATA)
    train(model, epochs=3)
    cold = model.text_item_embeddings(tf.constant(TEXTS[1:])).numpy()
    assert cold.shape == (NUM_ITEMS, 16)
    np.testing.assert_allclose(np.linalg.norm(cold, axis=1), 1.0, rtol=1e-5)


def test_items_absent_from_training_are_embedded_from_text_and_an_average_targets_id():
    model = build_model(config(task="retrieval"), DATA)
    held_out = EXAMPLES[schema.TARGET_ITEM_ID] == 5
    rows = {name: value[~held_out] for name, value in EXAMPLES.items()}
    rows[schema.HISTORY_ITEM_IDS] = np.where(rows[schema.HISTORY_ITEM_IDS] == 5, 0,
                                             rows[schema.HISTORY_ITEM_IDS])
    model.adapt(rows)
    model.refresh_catalogue()
    stored = model.item_embeddings(tf.constant([1, 5])).numpy()
    from_text = model.text_item_embeddings(tf.constant([TEXTS[1], TEXTS[5]])).numpy()
    np.testing.assert_allclose(stored[1], from_text[1], atol=1e-5)  # untrained id left out
    assert np.abs(stored[0] - from_text[0]).max() > 1e-3  # trained items keep their id embedding
    # In its place: the trained ids averaged by target count, the untrained item's own not among them.
    counts = np.bincount(rows[schema.TARGET_ITEM_ID], minlength=model.num_rows).astype(np.float64)
    weights = counts * model.trained_items.numpy()
    assert weights[5] == 0 and weights.sum() > 0
    expected = (weights / weights.sum()) @ model.item_tower.id_embedding.embeddings.numpy()
    np.testing.assert_allclose(model.untrained_id_vector().numpy(), expected, atol=1e-5)
    text_alone = model.item_tower.text_item_embeddings(tf.constant([TEXTS[5]])).numpy()
    assert np.abs(text_alone[0] - stored[1]).max() > 1e-4


@pytest.mark.parametrize("task", ["retrieval", "ranking"])
def test_model_get_config_round_trip(task, tmp_path):
    model = build_model(config(task=task, use_ratings=True), DATA)
    restored = Recommender.from_config(model.get_config())
    assert restored.vocab is None and not restored.built  # the catalogue is no hyperparameter: assets carry it
    model.save_assets(str(tmp_path))
    restored.load_assets(str(tmp_path))  # sets the catalogue and builds, for the weights loaded next
    model.save_weights(str(tmp_path / "model.weights.h5"))
    restored.load_weights(str(tmp_path / "model.weights.h5"))
    assert restored.get_config() == model.get_config()
    assert restored.vocab == VOCAB and restored.item_titles == TITLES and restored.rating_offset == 3.5
    test = head(EXAMPLES, 10)
    if task == "retrieval":
        np.testing.assert_allclose(restored.score_catalogue(test), model.score_catalogue(test), atol=1e-5)
    else:
        np.testing.assert_allclose(restored.predict_target(test), model.predict_target(test), atol=1e-5)


def test_full_softmax_scores_a_masked_positive_and_masks_it_as_a_negative():
    task = RetrievalTask("full", temperature=1.0)
    catalogue = tf.constant([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    queries = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    untrained = tf.constant([1.0, 1.0, 1.0, 0.0])  # item 3 never trained: no negative, still a target
    losses = task(queries, tf.constant([3, 2]), catalogue, tf.zeros([4]), candidate_mask=untrained).numpy()
    np.testing.assert_allclose(losses[0], np.log(np.exp(0.0) + np.exp(1.0) + np.exp(0.6)) - 0.6, rtol=1e-5)
    np.testing.assert_allclose(losses[1], np.log(np.exp(0.0) + np.exp(1.0)) - 1.0, rtol=1e-5)


def test_layer_get_config_round_trips():
    task = RetrievalTask("in_batch", 0.05, True, False, 3)
    assert RetrievalTask.from_config(task.get_config()).get_config() == task.get_config()


def test_sequence_training_keeps_non_overlapping_windows():
    model = build_model(config(task="retrieval", use_text=False), DATA)
    uniform = model.item_log_probability.numpy()
    rows = model.train_examples(EXAMPLES)
    np.testing.assert_array_equal(model.item_log_probability.numpy(), uniform)  # selects rows, sets nothing
    model.adapt(EXAMPLES)
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


def test_item_titles_come_from_the_data_and_reach_the_model():
    items = pd.DataFrame({schema.ITEM_ID: ["1", "2", "3"],
                          schema.TITLE: ["Mr. Holland's Opus (1995)", "", "  Heat (1995) "],
                          schema.DESCRIPTION: ["A teacher", "A heist. In LA", ""],
                          schema.GENRES: ["Drama", "", "Action|Crime"]})
    vocab = data.Vocabulary(["1", "2", "3", "4"], ["u"], ["rating"])
    titles = data.item_titles(items, vocab)
    # A title keeps its dots; an item without one is named by its text's first sentence; unknown items are "".
    assert titles == ["", "Mr. Holland's Opus (1995)", "A heist", "Heat (1995)", ""]
    assert data.item_texts(items, vocab)[1] == "Mr. Holland's Opus (1995). Drama. A teacher"
    model = Recommender(config(behaviour_text=True), vocab, data.item_texts(items, vocab), titles)
    assert model.item_titles == titles and model.behaviour_tower.titles == titles
    assert Recommender(config(), vocab, data.item_texts(items, vocab)).item_titles == data.item_texts(items, vocab)


@pytest.mark.parametrize("overrides, message", [
    (dict(task="search"), "task='search'"),
    (dict(use_text=False, use_item_ids=False), "use_text and use_item_ids"),
    (dict(embedding_dim=30, history_heads=4), "divisible"),
    (dict(dropout=1.5), "dropout=1.5"),
    (dict(temperature=0.0), "temperature"),
    (dict(encoder_trainable="top:x"), "encoder_trainable='top:x'"),
])
def test_bad_config_is_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_model(config(**overrides), DATA)


def test_wrong_catalogue_size_is_named():
    with pytest.raises(ValueError, match="expected num_items \\+ 1"):
        build_model(config(), SimpleNamespace(**dict(vars(DATA), item_texts=TEXTS[:-1])))


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ConfigError, match="unknown fields \\['colour'\\]"):
        ModelConfig.from_dict({"colour": "red"})
    assert ModelConfig.from_dict(config().to_dict()) == config()


def test_items_absent_from_training_are_no_full_softmax_negatives():
    model = build_model(config(task="retrieval", use_text=False), DATA)
    held_out = EXAMPLES[schema.TARGET_ITEM_ID] == 5
    rows = {name: value[~held_out] for name, value in EXAMPLES.items()}
    rows[schema.HISTORY_ITEM_IDS] = np.where(rows[schema.HISTORY_ITEM_IDS] == 5, 0,
                                             rows[schema.HISTORY_ITEM_IDS])
    model.adapt(rows)
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
    from tfrec.training import load_run, run_dir

    prepared = data.prepare(data.DataConfig(source="synthetic:users=12,items=20,per_user=8", history_length=6))
    cfg = config(task="retrieval")
    model = build_model(cfg, prepared)
    # Hold item 3 out of the training-data state: the reloaded model must keep that too.
    train_rows = dict(prepared.examples["train"])
    keep = (train_rows[schema.TARGET_ITEM_ID] != 3) & (train_rows[schema.HISTORY_ITEM_IDS] != 3).all(axis=1)
    model.adapt({name: value[keep] for name, value in train_rows.items()})
    model.refresh_catalogue()
    directory = run_dir.RunDirectory(str(tmp_path))
    # A run stores the config its model was built with: the settings derived from the data resolved.
    directory.write_json(run_dir.CONFIG, {"data_config": prepared.config.to_dict(), "model_config": model.cfg.to_dict(),
                                          "train_config": {}, "num_replicas": 1, "data_name": prepared.name})
    directory.write_run(model, prepared, {"HR@10": 0.0})
    run = load_run(str(tmp_path))
    assert run.model_config == model.cfg and run.data_config == prepared.config and run.vocab == prepared.vocab
    assert cfg.use_ratings is None and model.cfg.use_ratings is True  # synthetic logs have ratings
    assert run.model.item_texts == prepared.item_texts and run.model.item_titles == prepared.item_titles
    assert run.model.rating_offset == pytest.approx(prepared.rating_mean)
    assert run.model.trained_items.numpy()[3] == 0
    np.testing.assert_array_equal(run.model.trained_items.numpy(), model.trained_items.numpy())
    np.testing.assert_allclose(run.model.item_embeddings(tf.range(1, 6)).numpy(),
                               model.item_embeddings(tf.range(1, 6)).numpy(), atol=1e-6)
    histories = [[prepared.vocab.item_ids[1], prepared.vocab.item_ids[2]]]
    ids, scores = run.model.recommend(histories, k=3)
    expected_ids, expected_scores = model.recommend(histories, k=3)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-6)


def test_fine_tuned_text_re_encodes_only_refresh_items_per_step():
    tower = ItemTower(TEXTS, embedding_dim=8, encoder={"source": "tiny", "sequence_length": 12,
                                                       "trainable": "top:1"}, refresh_items=3)
    tower.build()
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
    base = build_model(config(task="retrieval", use_text=False), DATA)
    masked = build_model(config(task="retrieval", use_text=False, exclude_seen=True), DATA)
    masked.set_weights(base.get_weights())
    batch = tensors(head(EXAMPLES, 4))
    plain = base.task_losses(batch, training=False)["retrieval"]
    excluded = masked.task_losses(batch, training=False)["retrieval"]
    assert float(excluded) < float(plain)  # fewer negatives, lower cross-entropy


# ----- the Keras contract: predictions from call/predict, the loss from compute_loss -----


@pytest.mark.parametrize("task", ["retrieval", "ranking", "multitask"])
def test_predict_returns_predictions_and_compute_loss_the_loss(task):
    model = build_model(config(task=task, use_ratings=True), DATA)
    rows = head(EXAMPLES, 40)
    dataset = tf.data.Dataset.from_tensor_slices(rows).batch(16)
    predictions = model.predict(dataset, verbose=0)
    if task == "multitask":
        assert isinstance(predictions, dict) and set(predictions) == {"query_embeddings", "scores"}
        queries, scores = predictions["query_embeddings"], predictions["scores"]
    else:
        assert isinstance(predictions, np.ndarray)
        queries, scores = (predictions, None) if task == "retrieval" else (None, predictions)
    if queries is not None:
        assert queries.shape == (40, 16)
        has_history = rows[schema.HISTORY_LENGTH] > 0  # an empty history has no direction before training
        np.testing.assert_allclose(np.linalg.norm(queries[has_history], axis=1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(queries, model.query_embeddings(tensors(rows)).numpy(), atol=1e-5)
        np.testing.assert_allclose(model(tensors(rows)) if task == "retrieval"
                                   else model(tensors(rows))["query_embeddings"], queries, atol=1e-5)
    if scores is not None:
        assert scores.shape == (40,)
        np.testing.assert_allclose(scores, model.predict_target(rows), atol=1e-5)
        assert np.std(scores) > 0  # a score per example, not one loss
    batch = tensors(head(EXAMPLES, 32))
    loss = model.compute_loss(x=batch)
    assert loss.shape == () and np.isfinite(float(loss)) and float(loss) > 0
    losses = model.task_losses(batch, training=False)
    assert set(losses) == ({"retrieval"} if task == "retrieval" else {"ranking"} if task == "ranking"
                           else {"retrieval", "ranking"})
    weighted = (model.cfg.retrieval_weight * float(losses.get("retrieval", 0.0))
                + model.cfg.ranking_weight * float(losses.get("ranking", 0.0)))
    assert float(model.compute_loss(x=batch, training=False)) == pytest.approx(weighted, rel=1e-5)


# ----- recommend: item ids in, item ids and scores out -----


@pytest.fixture(scope="module")
def retrieval_model():
    return build_model(config(task="retrieval"), DATA)


def test_recommend_answers_item_ids_and_scores_and_excludes_the_history(retrieval_model):
    model = retrieval_model
    histories = [["i1", "i3", "i5"], ["i2"], ["i7", "i8", "i9", "i10", "i11", "i12", "i13"], []]
    ids, scores = model.recommend(histories, k=4)
    assert ids.shape == (4, 4) and scores.shape == (4, 4) and scores.dtype == np.float32
    assert all(isinstance(item, str) and item in VOCAB.item_ids[1:] for item in ids.ravel())
    assert np.all(np.diff(scores, axis=1) <= 0)
    for history, row in zip(histories, ids):
        assert not set(history) & set(row) and len(set(row)) == 4
    # The scores are the query's cosine with the stored item vectors.
    indices = VOCAB.item_index(ids.ravel()).reshape(ids.shape)
    padded = [[0] * (7 - len(h)) + list(VOCAB.item_index(h)) for h in histories]
    features = history_features(tf.constant(padded, tf.int32), default_event=1)
    queries = model.query_embeddings(features).numpy()
    vectors = model.item_embeddings(indices).numpy()
    np.testing.assert_allclose(scores, np.einsum("bd,bkd->bk", queries, vectors), atol=1e-5)


def test_recommend_without_exclusion_ranks_the_whole_catalogue(retrieval_model):
    model = retrieval_model
    histories = [["i1", "i3", "i5"], ["i2", "i4"]]
    ids, scores = model.recommend(histories, k=NUM_ITEMS, exclude_seen=False)
    for history, row in zip(histories, ids):
        assert sorted(row) == sorted(VOCAB.item_ids[1:])  # history items included
    excluded_ids, excluded_scores = model.recommend(histories, k=NUM_ITEMS - 3)
    for history, row, score_row, all_ids, all_scores in zip(histories, excluded_ids, excluded_scores, ids, scores):
        kept = [i for i, item in enumerate(all_ids) if item not in history][:NUM_ITEMS - 3]
        assert list(row) == list(all_ids[kept])
        np.testing.assert_allclose(score_row, all_scores[kept], atol=1e-6)


@pytest.mark.parametrize("histories, k, message", [
    ([["i1"]], 0, r"k=\[0\]: expected 1 <= k <= 24"),
    ([["i1"]], NUM_ITEMS + 1, r"k=\[25\]: expected 1 <= k <= 24"),
    ([["i1"], ["i2"]], [3, 0], r"k=\[3, 0\]: expected 1 <= k <= 24"),
    ([["i1"], ["i2"]], [3], r"k holds 1 values for 2 rows"),
    ([["i1", "i2"]], NUM_ITEMS - 1, r"k=\[23\] exceeds the number of catalogue items left after excluding the history"),
    ("i1", 3, r"histories: expected a list of lists"),
])
def test_recommend_rejects_bad_k(retrieval_model, histories, k, message):
    with pytest.raises(ValueError, match=message):
        retrieval_model.recommend(histories, k=k)


def test_recommend_skips_unknown_items_unless_strict(retrieval_model):
    answer = retrieval_model.recommend([["i1", "nope", "i3"], ["gone"]], k=3)
    assert answer.skipped_items == [["nope"], ["gone"]]
    known = retrieval_model.recommend([["i1", "i3"], []], k=3)
    np.testing.assert_array_equal(answer[0], known[0])
    with pytest.raises(ValueError, match=r"unknown item ids in history: \['gone', 'nope'\]"):
        retrieval_model.recommend([["i1", "nope"], ["gone"]], k=3, unknown_items="error")


def test_a_long_history_is_read_from_its_newest_behaviours_and_excluded_whole(retrieval_model):
    window = retrieval_model.request_encoder.max_history_length
    old = [f"i{i}" for i in range(1, 5)]
    recent = [f"i{5 + i % 10}" for i in range(window)]
    ids, scores = retrieval_model.recommend([old + recent], k=5)
    want_ids, want_scores = retrieval_model.recommend([recent], k=NUM_ITEMS, exclude_seen=False)
    allowed = [(i, s) for i, s in zip(want_ids[0], want_scores[0]) if i not in old + recent][:5]
    assert ids[0].tolist() == [i for i, _ in allowed]  # the old behaviours are not read, but excluded
    np.testing.assert_allclose(scores[0], [s for _, s in allowed], atol=1e-5)


def test_recommend_rejects_unknown_events_and_misaligned_context(retrieval_model):
    with pytest.raises(ValueError, match=r"unknown events: \['bought'\]"):
        retrieval_model.recommend([["i1", "i2"]], k=3, events=[["rating", "bought"]])
    with pytest.raises(ValueError, match="ratings: expected one list per history"):
        retrieval_model.recommend([["i1", "i2"]], k=3, ratings=[[4.0]])
    with pytest.raises(ValueError, match="events: expected one list per history"):
        retrieval_model.recommend([["i1", "i2"]], k=3, events=[None])
    with pytest.raises(ValueError, match=r"ratings: expected float32 values, got \[\['x', 'y'\]\]"):
        retrieval_model.recommend([["i1", "i2"]], k=3, ratings=[["x", "y"]])
    with pytest.raises(ValueError, match="recommend needs a retrieval or multitask model"):
        build_model(config(task="ranking", use_text=False), DATA).recommend([["i1"]], k=3)


# ----- construction -----


def test_the_constructor_is_light_and_build_encodes_the_catalogue(monkeypatch):
    encoded = []
    cache = ItemTower._cache_catalogue_text
    monkeypatch.setattr(ItemTower, "_cache_catalogue_text", lambda self: encoded.append(1) or cache(self))
    model = Recommender(config(task="multitask", encoder_trainable="top:1"), VOCAB, TEXTS, TITLES, rating_offset=3.5)
    assert not model.built and not model.item_tower.built and not encoded
    assert not np.any(model.catalogue.candidate_embeddings.numpy())  # no item vectors yet
    model.build()
    assert model.built and model.item_tower.built and len(encoded) == 1
    # The catalogue is encoded and the stored item vectors are the tower's.
    np.testing.assert_allclose(model.catalogue.candidate_embeddings.numpy(),
                               model.item_tower.catalogue(id_mask=model.trained_items).numpy(), atol=1e-6)
    model.build()
    assert len(encoded) == 1  # building again does not re-encode
    assert model.has_retrieval and model.has_ranking and model.rating_head.built
