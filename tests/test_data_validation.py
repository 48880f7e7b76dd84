"""Malformed inputs: each raises its specific DataError naming file, row and field; skip policy counts."""

import json

import pandas as pd
import pytest

from tfrec import data
from tfrec.data import errors

ITEMS = "item_id,title,description,genres\ni1,Alpha,About a,x|y\ni2,Beta,,z\ni3,Gamma,About c,\n"
LOGS = "user_id,item_id,timestamp,rating\nu1,i1,100,4\nu1,i2,200,5\nu2,i3,150,3\nu2,i1,160,1\n"


def load_csv(tmp_path, logs=LOGS, items=ITEMS, users=None, on_bad_rows="error", **options):
    (tmp_path / "logs.csv").write_bytes(logs.encode("utf-8") if isinstance(logs, str) else logs)
    (tmp_path / "items.csv").write_bytes(items.encode("utf-8") if isinstance(items, str) else items)
    source = f"table:interactions={tmp_path / 'logs.csv'},items={tmp_path / 'items.csv'}"
    if users is not None:
        (tmp_path / "users.csv").write_text(users)
        source += f",users={tmp_path / 'users.csv'}"
    return data.load(source, on_bad_rows=on_bad_rows, **options)


def test_clean_files_load(tmp_path):
    ds = load_csv(tmp_path)
    assert len(ds.interactions) == 4 and ds.skipped == {}
    assert ds.items.set_index("item_id").loc["i1", "genres"] == "x|y"


@pytest.mark.parametrize(
    "logs, items, options, error, fragments",
    [
        (
            "user_id,item_id,rating\nu1,i1,4\n",
            ITEMS,
            {},
            errors.MissingColumnError,
            ["logs.csv", "needs a 'timestamp' column", "DataConfig.time_col=..."],
        ),
        (
            LOGS,
            ITEMS,
            {"columns": data.ColumnMap(rating="stars")},
            errors.UnknownColumnError,
            ["logs.csv", "column 'stars' (DataConfig.rating_col=stars) is not there; the file has"],
        ),
        (
            "user_id,item_id,timestamp,rating\nu1,i1,100,4\nu1,i2,200,5,extra\n",
            ITEMS,
            {},
            errors.MalformedRowError,
            ["logs.csv, row 3", "got 'u1,i2,200,5,extra', expected 4 fields"],
        ),
        (
            "user_id,item_id,timestamp,rating\nu1,i1,100,4\n,i2,200,5\n",
            ITEMS,
            {},
            errors.MissingValueError,
            ["logs.csv, row 3, field 'user_id'", "expected a non-empty value"],
        ),
        (
            "user_id,item_id,timestamp,rating\nu1,i1,100,four\n",
            ITEMS,
            {},
            errors.FieldTypeError,
            ["logs.csv, row 2, field 'rating'", "got 'four', expected a number"],
        ),
        (
            "user_id,item_id,timestamp,rating\nu1,i1,100,4\nu1,i2,200,4\nu1,i3,300,7\n",
            ITEMS,
            {"rating_range": (1, 5)},
            errors.RatingRangeError,
            ["logs.csv, row 4, field 'rating'", "got '7', expected a number in [1, 5]"],
        ),
        (
            "user_id,item_id,timestamp,rating\nu1,i1,yesterday,4\n",
            ITEMS,
            {},
            errors.TimestampError,
            ["logs.csv, row 2, field 'timestamp'", "got 'yesterday', expected Unix time in seconds"],
        ),
        (
            "user_id,item_id,timestamp,rating\nu1,i1,2024-02-30 10:00,4\n",
            ITEMS,
            {"time_format": "%Y-%m-%d %H:%M"},
            errors.TimestampError,
            ["row 2, field 'timestamp'", "expected a time in format '%Y-%m-%d %H:%M'"],
        ),
        (
            LOGS,
            "item_id,title,description,genres\ni1,Alpha,About a,x\ni2, ,,\ni3,Gamma,c,\n",
            {},
            errors.EmptyTextError,
            ["items.csv, row 3, field 'title'", "expected a non-empty title or description or genres"],
        ),
        (
            LOGS,
            b"item_id,title,description,genres\ni1,Alpha,About a,x\ni2,Beta,,z\ni3,Gam\xffma,c,\n",
            {},
            errors.UndecodableTextError,
            ["items.csv, row 4, field 'title'", "expected text valid in the file's encoding"],
        ),
        (
            "user_id,item_id,timestamp,rating\nu1,i1,100,4\nu1,i9,200,5\n",
            ITEMS,
            {},
            errors.UnknownItemError,
            ["logs.csv, row 3, field 'item_id'", "got 'i9', expected an item_id of the catalogue"],
        ),
        (
            LOGS,
            ITEMS + "i2,Beta again,,\n",
            {},
            errors.DuplicateIdError,
            ["items.csv, row 5, field 'item_id'", "got 'i2', expected an id not already on row 3"],
        ),
        (
            LOGS,
            "item_id,description\ni1,a\n",
            {"columns": data.ColumnMap(title="name")},
            errors.UnknownColumnError,
            ["items.csv", "column 'name' (DataConfig.title_col=name)"],
        ),
    ],
)
def test_malformed_table_raises_specific_error(tmp_path, logs, items, options, error, fragments):
    with pytest.raises(error) as raised:
        load_csv(tmp_path, logs, items, **options)
    assert isinstance(raised.value, errors.DataError)
    for fragment in fragments:
        assert fragment in str(raised.value)


def test_excel_byte_order_mark_and_long_fields_are_read(tmp_path):
    long_text = "word " * 40_000  # 200 KB, over the csv module's default field limit
    items = ITEMS.replace("About a", long_text)
    ds = load_csv(tmp_path, logs=b"\xef\xbb\xbf" + LOGS.encode(), items=items)
    assert len(ds.interactions) == 4
    assert ds.items.set_index("item_id").loc["i1", "description"].strip() == long_text.strip()


def test_a_header_only_log_says_nothing_is_left(tmp_path):
    with pytest.raises(errors.DataError, match="no interactions left"):
        load_csv(tmp_path, logs="user_id,item_id,timestamp,rating\n")


def test_unknown_user_names_row(tmp_path):
    with pytest.raises(errors.UnknownUserError, match=r"logs.csv, row 4, field 'user_id': got 'u2'"):
        load_csv(tmp_path, users="user_id,age\nu1,30\n")


@pytest.mark.parametrize(
    "items, error, pattern",
    [
        (
            '{"item_id": "i1", "title": "A"}\n{"item_id": "i2", "title": \n',
            errors.MalformedRowError,
            r"items.jsonl, row 2: .*expected one JSON object per line",
        ),
        (
            '{"item_id": "i1", "title": {"en": "A"}}\n',
            errors.FieldTypeError,
            r"items.jsonl, row 1, field 'title': got \{'en': 'A'\}, expected a string",
        ),
    ],
)
def test_malformed_jsonl(tmp_path, items, error, pattern):
    (tmp_path / "items.jsonl").write_text(items)
    (tmp_path / "logs.jsonl").write_text('{"user_id": "u", "item_id": "i1", "timestamp": 5}\n')
    with pytest.raises(error, match=pattern):
        data.load(f"table:interactions={tmp_path / 'logs.jsonl'},items={tmp_path / 'items.jsonl'}")


def test_movielens_malformed_files(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::10::5::978300760\n1::20::5\n", encoding="latin-1")
    (tmp_path / "movies.dat").write_text("10::Heat (1995)::Action|Crime\n20::Up (2009)::Animation\n")
    with pytest.raises(errors.MalformedRowError, match=r"ratings.dat, row 2: got '1::20::5', expected 4 fields"):
        data.load(f"movielens:{tmp_path}")
    (tmp_path / "ratings.dat").write_text("1::10::5::978300760\n1::20::6::978300761\n")
    with pytest.raises(errors.RatingRangeError, match=r"ratings.dat, row 2, field 'rating': got '6'"):
        data.load(f"movielens:{tmp_path}")


def test_movielens_100k_bad_genre_flag(tmp_path):
    (tmp_path / "u.genre").write_text("unknown|0\nAction|1\n\n")
    (tmp_path / "u.item").write_text("1|Heat (1995)|01-Jan-1995||url|0|1\n2|Up (2009)|01-Jan-2009||url|0|x\n")
    (tmp_path / "u.data").write_text("1\t1\t5\t100\n")
    with pytest.raises(errors.FieldTypeError, match=r"u.item, row 2, field 'genres': got '0\|x', expected 2 genre flags"):
        data.load(f"movielens:{tmp_path}")


@pytest.mark.parametrize(
    "source, fragment",
    [
        ("nosuchkind:x", "expected a source KIND:VALUE"),
        ("movielens:/no/such/dir", "MovieLens directory not found"),
        ("table:interactions=a.csv", "table source needs interactions=FILE,items=FILE"),
        ("synthetic:users=ten", "synthetic options must be integers"),
        ("synthetic:colour=3", "unknown synthetic option"),
    ],
)
def test_bad_source_values(tmp_path, source, fragment):
    with pytest.raises(errors.SourceError, match=fragment):
        data.load(source)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"history_length": 0}, "DataConfig.history_length=0: expected a value >= 1"),
        ({"split": "by_magic"}, "DataConfig.split='by_magic': expected one of"),
        ({"on_bad_rows": "ignore"}, "DataConfig.on_bad_rows='ignore': expected one of ['error', 'skip']"),
        ({"split_fractions": (0.5, 0.1, 0.1)}, "DataConfig.split_fractions=(0.5, 0.1, 0.1): expected 3 non-negative"),
        ({"cold_fraction": 1.0}, "DataConfig.cold_fraction=1.0: expected a value < 1.0"),
        ({"rating_range": (5.0, 1.0)}, "DataConfig.rating_range=(5.0, 1.0): expected low,high with low < high"),
        ({"delimiter": "ab"}, "DataConfig.delimiter='ab': expected one character other than a quote or a line end"),
        ({"delimiter": "\n"}, "DataConfig.delimiter='\\n': expected one character"),
    ],
)
def test_data_config_names_the_bad_field(fields, message):
    from tfrec.config import ConfigError

    with pytest.raises(ConfigError) as raised:
        data.prepare(data.DataConfig(source="synthetic:users=5,items=10,per_user=4", **fields))
    assert str(raised.value).startswith(message)


def test_no_source_says_how_to_give_data(monkeypatch):
    monkeypatch.delenv(data.prepared.DATA_DIR_ENV, raising=False)
    with pytest.raises(errors.SourceError) as raised:
        data.prepare(data.DataConfig())
    message = str(raised.value)
    assert message.startswith("DataConfig.source=None: no data given")
    for hint in ("movielens:DIR", "TFREC_DATA_DIR", "tfds:movielens/100k"):
        assert hint in message
    monkeypatch.setenv(data.prepared.DATA_DIR_ENV, "/no/such/ml-100k")
    assert data.DataConfig().resolved_source() == "movielens:/no/such/ml-100k"


def test_skip_policy_counts_every_reason(tmp_path):
    logs = (
        "user_id,item_id,timestamp,rating\n"
        "u1,i1,100,4\n"  # good
        "u1,i2,200,5,x\n"  # malformed_row
        ",i2,200,5\n"  # missing_value
        "u1,i2,soon,5\n"  # invalid_timestamp
        "u1,i2,300,nine\n"  # wrong_type
        "u1,i2,300,9\n"  # rating_out_of_range
        "u1,i9,300,3\n"  # unknown_item
        "u2,i4,300,3\n"  # unknown_item (i4 is a skipped duplicate-free item with no text)
        "u2,i3,400,2\n"  # good
        "u2,i1,500,2\n"  # good
    )
    items = ITEMS + "i1,Alpha twice,,\ni4,,,\n"
    ds = load_csv(tmp_path, logs, items, on_bad_rows="skip", rating_range=(1, 5))
    assert ds.skipped == {
        "malformed_row": 1,
        "missing_value": 1,
        "invalid_timestamp": 1,
        "wrong_type": 1,
        "rating_out_of_range": 1,
        "unknown_item": 2,
        "duplicate_id": 1,
        "empty_text": 1,
    }
    assert ds.interactions[["user_id", "item_id"]].values.tolist() == [["u1", "i1"], ["u2", "i3"], ["u2", "i1"]]
    assert ds.items.item_id.tolist() == ["i1", "i2", "i3"]
    assert ds.items.title.tolist()[0] == "Alpha"  # the first of the duplicates is kept


def test_skip_policy_with_nothing_left_raises(tmp_path):
    with pytest.raises(errors.EmptyDataError, match="no interactions left .*unknown_item"):
        load_csv(tmp_path, "user_id,item_id,timestamp\nu1,i9,1\n", on_bad_rows="skip")


def test_skipped_counts_reach_describe(tmp_path):
    from tfrec.data import summary

    ds = load_csv(tmp_path, LOGS + "u3,i9,1,1\n", on_bad_rows="skip")
    stats = summary.describe(ds, data.split_interactions(ds))
    assert stats["skipped"] == {"unknown_item": 1}
    assert "skipped rows        unknown_item: 1" in summary.format_text(stats)
    json.dumps(stats)  # JSON-able


def test_parquet_typed_columns_validate(tmp_path):
    pd.DataFrame({"item_id": [1, 2], "title": ["A", "B"]}).to_parquet(tmp_path / "items.parquet")
    pd.DataFrame({"user_id": [7, 7], "item_id": [1, 2], "timestamp": [5.0, float("nan")]}).to_parquet(
        tmp_path / "logs.parquet"
    )
    with pytest.raises(errors.MissingValueError, match=r"logs.parquet, row 2, field 'timestamp'"):
        data.load(f"table:interactions={tmp_path / 'logs.parquet'},items={tmp_path / 'items.parquet'}")


def test_an_iso_time_in_a_unix_column_names_the_time_format(tmp_path):
    logs = "user_id,item_id,timestamp\nu1,i1,2024-03-01T10:00:00Z\n"
    with pytest.raises(errors.TimestampError, match=r"row 2, field 'timestamp': got '2024-03-01T10:00:00Z', "
                       r"expected Unix time in seconds; the value reads as an ISO 8601 date: use --time_format=iso"):
        load_csv(tmp_path, logs=logs)
    with pytest.raises(errors.TimestampError, match=r"expected Unix time in seconds$"):
        load_csv(tmp_path, logs="user_id,item_id,timestamp\nu1,i1,soon\n")


def test_an_unknown_item_says_how_to_skip_such_rows(tmp_path):
    with pytest.raises(errors.UnknownItemError, match=r"row 3, field 'item_id': got 'i9', expected an item_id of "
                       r"the catalogue \(DataConfig.on_bad_rows=skip skips such rows and counts them\)"):
        load_csv(tmp_path, logs=LOGS.replace("u1,i2", "u1,i9"))


def test_a_dataframe_error_speaks_of_the_dataframe():
    with pytest.raises(errors.MissingColumnError, match=r"items DataFrame: .*; the DataFrame has \['sku'\]"):
        data.from_dataframes(pd.DataFrame({"user_id": ["u"], "item_id": ["i"], "timestamp": [1]}),
                             pd.DataFrame({"sku": ["i"]}))
