"""Every source: table formats and column mapping, MovieLens 1M / latest-small layouts, tfds conversion, synthetic."""

import numpy as np
import pandas as pd
import pytest

from tfrec import data
from tfrec.data import schema, synthetic, tfds_source

LOGS = pd.DataFrame(
    {
        "customer": ["c2", "c1", "c1", "c2", "c1"],
        "sku": ["10", "9", "10", "9", "11"],
        "when": ["2024-01-02 10:00:00", "2024-01-01 09:00:00", "2024-01-01 09:00:00", "2024-01-03 00:00:00",
                 "2024-01-05 12:30:00"],
        "stars": [4.0, 5.0, 3.5, 2.0, 1.0],
        "kind": ["View", "click", "purchase", "view", "view"],
    }
)  # fmt: skip
ITEMS = pd.DataFrame(
    {"sku": ["9", "10", "11"], "name": ["Nine", "Ten", "Eleven"], "blurb": ["About nine.", "", "About eleven."],
     "tags": ["a;b", "b", ""]}
)  # fmt: skip
COLUMNS = data.ColumnMap(
    user="customer", item="sku", time="when", rating="stars", event="kind", title="name", description="blurb",
    genres="tags",
)  # fmt: skip


def write(frame, path):
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_table_formats_load_the_same(tmp_path, suffix):
    logs = write(LOGS, tmp_path / f"logs{suffix}")
    items = write(ITEMS, tmp_path / f"items{suffix}")
    ds = data.load(
        f"table:interactions={logs},items={items}",
        columns=COLUMNS,
        time_format="%Y-%m-%d %H:%M:%S",
        genres_separator=";",
    )
    # Sorted by user, time, then item id in numeric order ("9" before "10").
    assert ds.interactions[schema.USER_ID].tolist() == ["c1", "c1", "c1", "c2", "c2"]
    assert ds.interactions[schema.ITEM_ID].tolist() == ["9", "10", "11", "10", "9"]
    assert ds.interactions[schema.TIMESTAMP].tolist()[:2] == [1704099600, 1704099600]
    assert ds.interactions[schema.RATING].tolist() == [5.0, 3.5, 1.0, 4.0, 2.0]
    assert ds.interactions[schema.EVENT].tolist() == ["click", "purchase", "view", "view", "view"]
    assert ds.items.to_dict("list") == {
        "item_id": ["9", "10", "11"],
        "title": ["Nine", "Ten", "Eleven"],
        "description": ["About nine.", "", "About eleven."],
        "genres": ["a|b", "b", ""],
    }
    assert ds.interactions[schema.TIMESTAMP].dtype == np.int64
    assert ds.interactions[schema.RATING].dtype == np.float32


def test_table_defaults_unix_ms_and_users(tmp_path):
    logs = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "x"], "timestamp": [1_700_000_000_123, 5_000]})
    write(logs, tmp_path / "logs.csv")
    write(pd.DataFrame({"item_id": ["x"], "description": ["Only a description"]}), tmp_path / "items.csv")
    write(pd.DataFrame({"user_id": ["a", "b"], "country": ["fr", "de"]}), tmp_path / "users.csv")
    ds = data.load(
        f"table:interactions={tmp_path / 'logs.csv'},items={tmp_path / 'items.csv'},users={tmp_path / 'users.csv'}",
        time_format="unix_ms",
    )
    assert ds.interactions[schema.TIMESTAMP].tolist() == [1_700_000_000, 5]
    assert not ds.has_ratings and not ds.has_events
    assert ds.users.to_dict("list") == {"user_id": ["a", "b"], "country": ["fr", "de"]}
    assert ds.items.title.tolist() == [""]


def test_movielens_1m_layout(tmp_path):
    (tmp_path / "ratings.dat").write_text("2::20::3::978300000\n1::10::5::978300760\n1::20::4::978300100\n")
    (tmp_path / "movies.dat").write_bytes("10::Amélie (2001)::Comedy|Romance\n20::Heat (1995)::Action\n".encode("latin-1"))
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    (tmp_path / "movie_wiki.csv").write_text("movie_title,wiki_summary\nAmélie (2001),\"A whimsical, French film.\"\n")
    ds = data.load(f"movielens:{tmp_path}")
    assert ds.interactions[[schema.USER_ID, schema.ITEM_ID]].values.tolist() == [["1", "20"], ["1", "10"], ["2", "20"]]
    assert ds.items.title.tolist() == ["Amélie (2001)", "Heat (1995)"]
    assert ds.items.genres.tolist() == ["Comedy|Romance", "Action"]
    assert ds.items.description.tolist() == ["A whimsical, French film.", ""]
    assert ds.users.columns.tolist() == ["user_id", "gender", "age", "occupation", "zip_code"]


def test_movielens_lost_accents_are_restored_from_the_wiki_titles(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::10::5::978300760\n")
    (tmp_path / "movies.dat").write_bytes("10::Am\ufffdlie (2001)::Comedy\n".encode("utf-8"))
    (tmp_path / "movie_wiki.csv").write_text("movie_title,wiki_summary\nAmélie (2001),A French film.\n")
    ds = data.load(f"movielens:{tmp_path}")
    assert ds.items[[schema.TITLE, schema.DESCRIPTION]].values.tolist() == [["Amélie (2001)", "A French film."]]


def test_movielens_latest_small_layout(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,0.5,964981247\n")
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n3,"Grumpier Old Men, The (1995)",'
        "(no genres listed)\n"
    )
    ds = data.load(f"movielens:{tmp_path}")
    assert ds.interactions[schema.ITEM_ID].tolist() == ["3", "1"]
    assert ds.interactions[schema.RATING].tolist() == [0.5, 4.0]
    assert ds.items.title.tolist() == ["Toy Story (1995)", "Grumpier Old Men, The (1995)"]
    assert ds.items.genres.tolist() == ["Adventure|Animation", ""]
    assert ds.users is None


def test_movielens_unknown_layout(tmp_path):
    (tmp_path / "ratings.txt").write_text("")
    with pytest.raises(data.SourceError, match=r"no MovieLens layout found: expected 100k \(u.data"):
        data.load(f"movielens:{tmp_path}")


def test_tfds_conversion_from_in_memory_datasets():
    tf = pytest.importorskip("tensorflow")
    ratings = tf.data.Dataset.from_tensor_slices(
        {
            "user_id": [b"2", b"1", b"1"],
            "movie_id": [b"5", b"5", b"7"],
            "movie_title": [b"Five (1990)", b"Five (1990)", b"Seven (1995)"],
            "timestamp": np.array([30, 20, 10], np.int64),
            "user_rating": np.array([3.0, 4.0, 5.0], np.float32),
            "user_gender": [True, False, False],
            "bucketized_user_age": np.array([25.0, 35.0, 35.0], np.float32),
            "user_occupation_text": [b"writer", b"other", b"other"],
            "user_zip_code": [b"111", b"222", b"222"],
        }
    )
    movies = tf.data.Dataset.from_generator(
        lambda: iter(
            [
                {"movie_id": b"5", "movie_title": b"Five (1990)", "movie_genres": np.array([4, 7], np.int64)},
                {"movie_id": b"7", "movie_title": b"Seven (1995)", "movie_genres": np.array([20], np.int64)},
            ]
        ),
        output_signature={
            "movie_id": tf.TensorSpec([], tf.string),
            "movie_title": tf.TensorSpec([], tf.string),
            "movie_genres": tf.TensorSpec([None], tf.int64),
        },
    )
    ds = tfds_source.from_tfds(ratings, movies, name="tfds:movielens/100k")
    assert ds.interactions[[schema.USER_ID, schema.ITEM_ID, schema.TIMESTAMP]].values.tolist() == [
        ["1", "7", 10],
        ["1", "5", 20],
        ["2", "5", 30],
    ]
    assert ds.items.genres.tolist() == ["Comedy|Drama", ""]
    assert ds.users.to_dict("list") == {
        "user_id": ["2", "1"],
        "age_group": ["25.0", "35.0"],
        "gender": ["True", "False"],
        "occupation": ["writer", "other"],
        "zip_code": ["111", "222"],
    }


def test_tfds_load_without_internet_says_what_to_do(tmp_path):
    with pytest.raises(data.SourceError, match="Offline, use the source movielens:DIR"):
        tfds_source.load_tfds("movielens/no-such-config", data_dir=str(tmp_path))


def test_synthetic_is_seeded_and_shaped():
    a = synthetic.generate(users=30, items=200, per_user=12, seed=3)
    b = synthetic.generate(users=30, items=200, per_user=12, seed=3)
    c = synthetic.generate(users=30, items=200, per_user=12, seed=4)
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    assert not a.interactions.equals(c.interactions)
    counts = a.interactions.groupby(schema.USER_ID).size()
    assert len(counts) == 30 and counts.max() == 12 and counts.mean() > 11
    assert not a.interactions.duplicated([schema.USER_ID, schema.ITEM_ID]).any()
    assert set(a.interactions[schema.EVENT]) == {"view", "click", "purchase"}
    assert (a.items.description != "").all() and len(a.items) == 200


def test_synthetic_text_predicts_the_next_item_better_than_popularity():
    """Next item's topic (read from the history's item text) beats global popularity."""
    ds = synthetic.generate(users=300, items=200, per_user=20, seed=0)
    sp = data.split_interactions(ds, "leave_last_out")
    train = sp.train
    genre = ds.items.set_index(schema.ITEM_ID)[schema.GENRES]
    popularity = train[schema.ITEM_ID].value_counts()
    popular_top10 = set(popularity.index[:10])
    last_topic = train.groupby(schema.USER_ID)[schema.ITEM_ID].last().map(genre)
    by_topic = train.assign(topic=train[schema.ITEM_ID].map(genre)).groupby("topic")[schema.ITEM_ID]
    topic_top10 = {topic: set(ids.value_counts().index[:10]) for topic, ids in by_topic}
    test = sp.test.set_index(schema.USER_ID)[schema.ITEM_ID]
    hits_popular = np.mean([item in popular_top10 for item in test])
    hits_text = np.mean([item in topic_top10[last_topic[user]] for user, item in test.items()])
    assert hits_text > 2 * hits_popular
