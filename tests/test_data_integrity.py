"""Wrong data that once loaded silently: repeated rows, implausible times, control characters in ids,
an unclosed quote. Each is refused naming file, row and field, or handled as the policy says and counted."""

import json

import pytest

from tfrec import data
from tfrec.config import ConfigError
from tfrec.data import errors, summary

ITEMS = "item_id,title\ni1,Alpha\ni2,Beta\ni3,Gamma\n"
HEADER = "user_id,item_id,timestamp,rating\n"
LOGS = HEADER + "u1,i1,1000,4\nu1,i2,2000,5\nu2,i3,1500,3\nu2,i1,1600,1\n"


def message(raised, tmp_path):
    """The error message, file names relative to `tmp_path`."""
    return str(raised.value).replace(f"{tmp_path}/", "")


def load(tmp_path, logs=LOGS, items=ITEMS, logs_name="logs.csv", **options):
    (tmp_path / logs_name).write_bytes(logs.encode("utf-8"))
    (tmp_path / "items.csv").write_bytes(items.encode("utf-8"))
    return data.load(f"table:interactions={tmp_path / logs_name},items={tmp_path / 'items.csv'}", **options)


# 40 exact repeats among 200 rows, as reported.
REPEATED = HEADER + "".join(f"u{n % 5},i{n % 3 + 1},{1000 + n},4\n" for n in range(160)) + "".join(
    f"u{n % 5},i{n % 3 + 1},{1000 + n},4\n" for n in range(40)
)


def test_exact_duplicates_are_refused_by_default_with_their_count(tmp_path):
    with pytest.raises(errors.DuplicateRowError) as raised:
        load(tmp_path, REPEATED, on_bad_rows="skip")  # not a bad row to skip: its own policy
    text = message(raised, tmp_path)
    assert text.startswith("logs.csv, row 162: this row repeats row 2 exactly (40 such repeated rows)")
    assert "--duplicates=drop" in text and "--duplicates=keep" in text


def test_drop_keeps_the_first_and_counts_the_rest_where_skips_are_reported(tmp_path):
    ds = load(tmp_path, REPEATED, duplicates="drop")
    assert len(ds.interactions) == 160 and ds.skipped == {"duplicate_row": 40}
    stats = summary.describe(ds, data.split_interactions(ds))
    assert stats["skipped"] == {"duplicate_row": 40}
    assert "skipped rows        duplicate_row: 40" in summary.format_text(stats)
    assert len(load(tmp_path, REPEATED, duplicates="keep").interactions) == 200


@pytest.mark.parametrize("policy, repeat", [("error", ""), ("drop", "u1,i1,1000,4\n")])
def test_the_same_user_item_and_time_with_another_rating_is_a_conflict(tmp_path, policy, repeat):
    logs = LOGS + repeat + "u2,i3,1500,5\n"  # drop resolves the exact repeat, never the conflict
    with pytest.raises(errors.ConflictingRowsError) as raised:
        load(tmp_path, logs, duplicates=policy)
    assert message(raised, tmp_path).startswith(
        f"logs.csv, row {6 + bool(repeat)}, field 'rating': user 'u2', item 'i3' at time 1500 has rating 5 here "
        "and 3 on row 4 (1 such conflicting rows)"
    )
    assert len(load(tmp_path, logs, duplicates="keep").interactions) == 5 + bool(repeat)


def test_different_events_at_the_same_time_are_two_behaviours(tmp_path):
    logs = "user_id,item_id,timestamp,event\nu1,i1,10,view\nu1,i1,10,purchase\nu1,i2,20,view\nu1,i2,20,view\n"
    ds = load(tmp_path, logs, duplicates="drop")
    assert ds.interactions.event.tolist() == ["view", "purchase", "view"] and ds.skipped == {"duplicate_row": 1}


def test_the_duplicates_policy_covers_movielens_directories(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,1000000000\n"
                                          "1,1,4.0,1000000000\n1,2,3.0,1000000020\n")
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,One,Drama\n2,Two,Comedy\n")
    with pytest.raises(errors.DataError, match="row 3: this row repeats row 2 exactly"):
        data.load(f"movielens:{tmp_path}")
    dropped = data.prepare(data.DataConfig(source=f"movielens:{tmp_path}", duplicates="drop", history_length=2))
    assert len(dropped.tables.interactions) == 2 and dropped.tables.skipped == {"duplicate_row": 1}


def test_the_duplicates_policy_is_a_checked_data_config_field():
    assert data.DataConfig(duplicates="drop").table_options()["duplicates"] == "drop"
    with pytest.raises(ConfigError, match="duplicates"):
        data.DataConfig(duplicates="first").validate()


@pytest.mark.parametrize(
    "time, time_format, fragments",
    [
        ("1700000000123", "unix", ["year 55,", "use --time_format=unix_ms"]),
        ("9999999999999", "unix", ["year 318,"]),
        ("-86400", "unix", ["got 1969-12-31"]),
        ("4102444800", "unix", ["got 2100-01-01"]),
        ("1700000000123456", "unix_ms", ["got year 55,"]),
    ],
)
def test_implausible_times_are_refused_with_a_hint(tmp_path, time, time_format, fragments):
    with pytest.raises(errors.TimestampError) as raised:
        load(tmp_path, LOGS + f"u1,i3,{time},2\n", time_format=time_format)
    text = message(raised, tmp_path)
    assert text.startswith(f"logs.csv, row 6, field 'timestamp': got '{time}', expected Unix time in ")
    assert "between 1970-01-01 and " in text
    for fragment in fragments:
        assert fragment in text
    assert ("--time_format" in text) == ("use --time_format=unix_ms" in fragments)


def test_implausible_times_are_skipped_and_counted(tmp_path):
    ds = load(tmp_path, LOGS + "u1,i3,1700000000123,2\n", on_bad_rows="skip")
    assert len(ds.interactions) == 4 and ds.skipped == {"invalid_timestamp": 1}


def test_seconds_read_as_milliseconds_are_refused_with_a_hint(tmp_path):
    logs = HEADER + "u1,i1,1700000000,4\nu1,i2,1700000100,5\n"
    with pytest.raises(errors.TimestampError, match=r"row 2, field 'timestamp'.*2023-11-14.*use --time_format=unix$"):
        load(tmp_path, logs, time_format="unix_ms")
    assert load(tmp_path, logs).interactions.timestamp.tolist() == [1700000000, 1700000100]


@pytest.mark.parametrize(
    "logs, items, where, code",
    [
        (HEADER + "u1,i1,1000,4\nu\x002,i2,1000,4\n", ITEMS, "logs.csv, row 3, field 'user_id'", "U+0000 at character 2"),
        (HEADER + "u1,i1,1000,4\nu2,i\x1b2,1000,4\n", ITEMS, "logs.csv, row 3, field 'item_id'", "U+001B at character 2"),
        (LOGS, "item_id,title\ni1,Alpha\ni2\x7f,Beta\ni3,Gamma\ni2,Beta\n", "items.csv, row 3, field 'item_id'",
         "U+007F at character 3"),
    ],
)
def test_control_characters_in_ids_are_refused(tmp_path, logs, items, where, code):
    with pytest.raises(errors.ControlCharacterError) as raised:
        load(tmp_path, logs, items)
    assert message(raised, tmp_path).startswith(where)
    assert f"expected an id without control characters ({code})" in message(raised, tmp_path)


def test_control_characters_in_jsonl_ids_are_refused_or_skipped(tmp_path):
    logs = "".join(json.dumps(r) + "\n" for r in (
        {"user_id": "u1", "item_id": "i1", "timestamp": 1000}, {"user_id": "u1\u0001", "item_id": "i2", "timestamp": 9}))
    with pytest.raises(errors.ControlCharacterError, match=r"logs.jsonl, row 2, field 'user_id'"):
        load(tmp_path, logs, logs_name="logs.jsonl")
    ds = load(tmp_path, logs, logs_name="logs.jsonl", on_bad_rows="skip")
    assert ds.skipped == {"control_character": 1} and ds.interactions.user_id.tolist() == ["u1"]


def test_line_separators_inside_jsonl_strings_stay_in_their_line(tmp_path):
    logs = json.dumps({"user_id": "u\u20281", "item_id": "i1", "timestamp": 5}, ensure_ascii=False) + "\n"
    assert load(tmp_path, logs, logs_name="logs.jsonl").interactions.user_id.tolist() == ["u\u20281"]


# Item 15's title opens a quote that is never closed: read leniently, the field swallows items 16 and 17.
UNCLOSED = "item_id,title,description\n14,Fourteen,About 14\n15,\"Heat,About heat\n16,Alien,About alien\n" \
           "17,\"Up\",About up\n18,Eighteen,About 18\n"


@pytest.mark.parametrize("on_bad_rows", ["error", "skip"])
def test_an_unclosed_quote_is_refused_where_it_opens(tmp_path, on_bad_rows):
    logs = HEADER + "".join(f"u1,{item},{item}00,4\n" for item in range(14, 19))
    with pytest.raises(errors.MalformedRowError) as raised:
        load(tmp_path, logs, UNCLOSED, on_bad_rows=on_bad_rows)
    text = message(raised, tmp_path)
    assert text.startswith("items.csv, row 3: unreadable CSV in the record starting on this row")
    assert "reading line 5" in text and "a quote opened here may be unclosed" in text


def test_quoted_fields_with_line_breaks_and_quotes_still_read(tmp_path):
    items = 'item_id,title\ni1,"Stool 12 x 10\n31 x 25 cm, gray"\ni2,"He said ""hi"""\ni3,Gamma\n'
    ds = load(tmp_path, items=items)
    assert ds.items.title.tolist() == ["Stool 12 x 10\n31 x 25 cm, gray", 'He said "hi"', "Gamma"]


def test_blank_lines_in_a_csv_hold_no_row_and_keep_the_row_numbers(tmp_path):
    ds = load(tmp_path, LOGS.replace("u2,i3", "\nu2,i3") + "\n\n")
    assert len(ds.interactions) == 4
    with pytest.raises(errors.DataError, match=r"logs.csv, row 5: got 'u2,i3,1500,3,9', expected 4 fields"):
        load(tmp_path, LOGS.replace("u2,i3,1500,3", "\nu2,i3,1500,3,9"))
