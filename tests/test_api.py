"""The Python API without any flag: DataFrames in, `build_model`, `Trainer.fit`,
`model.recommend`; `from_dataframes` validates like the table source."""

import re

import numpy as np
import pandas as pd
import pytest

import tfrec
from tfrec.config import ConfigError
from tfrec.data import errors

NUM_USERS, NUM_ITEMS, PER_USER = 40, 120, 12
WORDS = "space love war crime comedy robot paris drama music horse river night".split()


def _logs(user_col="user_id"):
    """Each user walks through the catalogue in steps of 1 to 3 items: the next item follows the history."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(NUM_USERS):
        item = int(rng.integers(NUM_ITEMS))
        for step in range(PER_USER):
            rows.append({user_col: f"u{user}", "item_id": f"i{item}", "timestamp": 1_000_000 + 3600 * step + user})
            item = (item + int(rng.integers(1, 4))) % NUM_ITEMS
    return pd.DataFrame(rows)


def _items():
    return pd.DataFrame({"item_id": [f"i{i}" for i in range(NUM_ITEMS)],
                         "title": [f"{WORDS[i % 12]} {WORDS[(i // 12) % 12]} {i}" for i in range(NUM_ITEMS)]})


MODEL = dict(task="retrieval", encoder="tiny", encoder_trainable="none", sequence_length=12, embedding_dim=16,
             history_layers=1, history_heads=2, seed=0)


@pytest.fixture(scope="module")
def prepared():
    return tfrec.data.from_dataframes(_logs(), _items())


def test_dataframes_to_recommendations_without_flags(prepared):
    data = prepared
    assert data.name == "dataframes" and data.vocab.num_items == NUM_ITEMS and data.vocab.num_users == NUM_USERS
    assert sorted(data.examples) == ["test", "train", "valid"]
    assert len(data.examples["test"]["target_item_id"]) == NUM_USERS  # leave_last_out: one per user
    assert data.item_titles[1:] == [data.tables.items.set_index("item_id").loc[i, "title"]
                                    for i in data.vocab.item_ids[1:]]

    model = tfrec.models.build_model(tfrec.models.ModelConfig(**MODEL), data)
    assert isinstance(model, tfrec.models.Recommender) and model.has_retrieval and not model.has_ranking
    result = tfrec.Trainer(tfrec.TrainConfig(epochs=2, batch_size=32, verbose=0)).fit(model, data)
    assert isinstance(result, tfrec.TrainResult) and result.run_dir is None
    assert len(result.history["loss"]) == 2 and all(np.isfinite(result.history["loss"]))
    for key in ("HR@10", "NDCG@10", "Recall@100", "MRR"):
        assert 0.0 <= result.metrics[key] <= 1.0 and key in result.metrics["valid"]

    catalogue = set(_items()["item_id"])
    histories = [["i3", "i5", "i7"], ["i100"], []]
    item_ids, scores = model.recommend(histories, k=5)
    assert item_ids.shape == scores.shape == (3, 5) and scores.dtype == np.float32
    assert all(isinstance(item, str) and item in catalogue for item in item_ids.ravel())
    assert all(len(set(row)) == 5 for row in item_ids.tolist())
    assert not set(item_ids[0]) & set(histories[0]) and "i100" not in item_ids[1]  # seen items are excluded
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    assert model.recommend([["i1", "nope"]], k=5).skipped_items == [["nope"]]
    with pytest.raises(ValueError, match=re.escape("unknown item ids in history: ['nope']")):
        model.recommend([["i1", "nope"]], k=5, unknown_items="error")


def _write_csv(frame, path):
    frame.to_csv(path, index=False)
    return path


def _normalised(message, files):
    """A table-source message as the DataFrame's: `FILE, row N` -> `ROLE DataFrame, row N-1` (files count
    their header as row 1); values quoted as read from text (`got '9.0'`) unquoted as typed columns show them;
    "the file has" (columns) -> "the DataFrame has"."""
    for role, path in files.items():
        message = message.replace(str(path), f"{role} DataFrame")
    message = message.replace("the file has", "the DataFrame has")
    message = re.sub(r"(DataFrame, row |on row )(\d+)", lambda m: f"{m.group(1)}{int(m.group(2)) - 1}", message)
    return re.sub(r"got '([\d.]+)'", r"got \1", message)


BAD = [
    ("missing_column", lambda logs, items: (logs.drop(columns="timestamp"), items), {}, errors.MissingColumnError,
     "interactions DataFrame: the interactions table needs a 'timestamp' column (or name its column with "
     "DataConfig.time_col=...)"),
    ("bad_timestamp", lambda logs, items: (logs.astype({"timestamp": object}).assign(
        timestamp=lambda f: f.timestamp.where(f.index != 4, "yesterday")), items), {}, errors.TimestampError,
     "interactions DataFrame, row 5, field 'timestamp': got 'yesterday', expected Unix time in seconds"),
    ("unknown_item", lambda logs, items: (logs, items[items.item_id != "i3"]), {}, errors.UnknownItemError,
     "field 'item_id': got 'i3', expected an item_id of the catalogue"),
    ("duplicate_item", lambda logs, items: (logs, pd.concat([items, items.iloc[[2]]], ignore_index=True)), {},
     errors.DuplicateIdError, f"items DataFrame, row {NUM_ITEMS + 1}, field 'item_id': got 'i2', expected an id "
                              "not already on row 3"),
    ("rating_range", lambda logs, items: (logs.assign(rating=[9.0] + [3.0] * (len(logs) - 1)), items),
     {"rating_range": (1.0, 5.0)}, errors.RatingRangeError,
     "interactions DataFrame, row 1, field 'rating': got 9.0, expected a number in [1, 5]"),
]


@pytest.mark.parametrize("make, options, error, message", [pytest.param(*case[1:], id=case[0]) for case in BAD])
def test_from_dataframes_validates_like_the_table_source(tmp_path, make, options, error, message):
    logs, items = make(_logs(), _items())
    with pytest.raises(error) as from_frames:
        tfrec.data.from_dataframes(logs, items, **options)
    assert isinstance(from_frames.value, errors.DataError)
    assert message in str(from_frames.value)
    files = {"interactions": _write_csv(logs, tmp_path / "logs.csv"), "items": _write_csv(items, tmp_path / "items.csv")}
    source = "table:" + ",".join(f"{role}={path}" for role, path in files.items())
    with pytest.raises(error) as from_files:
        tfrec.data.prepare(tfrec.data.DataConfig(source=source, **options))
    # Same check, same message: only the file name and the header row differ.
    assert _normalised(str(from_files.value), files) == str(from_frames.value)


def test_from_dataframes_skip_policy_counts_like_the_table_source():
    logs = _logs()
    logs.loc[3, "item_id"] = "i999"
    data = tfrec.data.from_dataframes(logs, _items(), on_bad_rows="skip")
    assert data.tables.skipped == {"unknown_item": 1} and len(data.tables.interactions) == len(logs) - 1


def test_from_dataframes_refuses_other_arguments():
    logs, items = _logs(), _items()
    with pytest.raises(errors.SourceError, match="interactions DataFrame: expected a pandas DataFrame, got list"):
        tfrec.data.from_dataframes(logs.to_dict("records"), items)
    with pytest.raises(errors.SourceError, match="items DataFrame: expected a pandas DataFrame, got dict"):
        tfrec.data.from_dataframes(logs, items.to_dict())
    with pytest.raises(errors.SourceError, match="users DataFrame: expected a pandas DataFrame, got str"):
        tfrec.data.from_dataframes(logs, items, users="users.csv")


def test_from_dataframes_checks_its_config():
    with pytest.raises(ConfigError, match=re.escape("DataConfig.history_length=0: expected a value >= 1")):
        tfrec.data.from_dataframes(_logs(), _items(), history_length=0)
    with pytest.raises(TypeError, match="no_such_field"):
        tfrec.data.from_dataframes(_logs(), _items(), no_such_field=1)


def test_from_dataframes_maps_columns_and_leaves_the_frames_alone():
    logs = _logs(user_col="customer").rename(columns={"item_id": "sku", "timestamp": "when"})
    items = _items().rename(columns={"item_id": "sku", "title": "name"})
    before = logs.copy()
    data = tfrec.data.from_dataframes(logs, items, user_col="customer", item_col="sku", time_col="when",
                                      title_col="name", history_length=5)
    pd.testing.assert_frame_equal(logs, before)  # the caller's DataFrame is not renamed
    assert data.config.user_col == "customer" and data.config.history_length == 5
    assert list(data.tables.interactions.columns[:3]) == ["user_id", "item_id", "timestamp"]
    assert set(data.tables.interactions["user_id"]) == set(logs["customer"])
    assert data.vocab.num_users == NUM_USERS and data.vocab.num_items == NUM_ITEMS
    assert data.examples["test"]["history_item_ids"].shape == (NUM_USERS, 5)
    assert data.item_titles[data.vocab.item_index(["i7"])[0]] == items.set_index("sku").loc["i7", "name"]
    with pytest.raises(errors.UnknownColumnError,
                       match=r"column 'customer' \(DataConfig.user_col=customer\) is not there; the DataFrame has"):
        tfrec.data.from_dataframes(_logs(), _items(), user_col="customer")


def test_from_dataframes_with_a_users_table():
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(NUM_USERS - 1)], "country": "fr"})
    with pytest.raises(errors.UnknownUserError, match=r"interactions DataFrame, row \d+, field 'user_id': got 'u39'"):
        tfrec.data.from_dataframes(_logs(), _items(), users=users)
    users = pd.concat([users, pd.DataFrame({"user_id": [f"u{NUM_USERS - 1}"], "country": ["de"]})])
    data = tfrec.data.from_dataframes(_logs(), _items(), users=users)
    assert data.tables.users.columns.tolist() == ["user_id", "country"] and len(data.tables.users) == NUM_USERS


def test_load_refuses_a_dataframe_and_points_to_from_dataframes():
    with pytest.raises(errors.SourceError, match="from_dataframes"):
        tfrec.data.load(_logs())


def test_a_run_directory_of_an_earlier_version_is_refused_by_name(tmp_path):
    (tmp_path / "config.json").write_text('{"flags": {"epochs": 2}, "model_config": {}}')
    with pytest.raises(ConfigError, match="written by an earlier tfrec"):
        tfrec.training.load_run(str(tmp_path))
