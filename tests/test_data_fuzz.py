"""Property tests of the table reader: random tables and random bytes give a `DataError` with a message,
or a parse whose rows equal what was written; never another exception."""

import collections
import csv
import json
import math
import unicodedata

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfrec import data
from tfrec.data import errors

SETTINGS = settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Characters that break naive readers: delimiters, quotes, line ends, controls, other scripts.
AWKWARD_CHARACTERS = [",", "\t", '"', "'", "\n", "\r", "\r\n", "\x00", "\x1f", "\x7f", "\x85", "\u2028", "\ufeff",
                      "|", "\\", " ", "é", "日", "\U0001f600"]
AWKWARD = st.sampled_from(AWKWARD_CHARACTERS)
TEXT = st.lists(st.characters(codec="utf-8", exclude_categories=("Cs",)) | AWKWARD, max_size=6).map("".join)
NUMBER = st.one_of(
    st.integers(-10**16, 10**16).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " 4", "4_0", "1e3", "0x10", "١٢", "nan", "-0", "1.5e9"]),
    TEXT,
)
PLAUSIBLE_TIME = st.integers(0, 1_800_000_000).map(str)


@st.composite
def tables(draw):
    """(items, interactions, file format): rows of str fields, item ids drawn from the catalogue."""
    item_ids = draw(st.lists(TEXT, min_size=1, max_size=5))
    items = [(item_id, draw(TEXT | st.just("A title"))) for item_id in item_ids]
    logs = [
        (draw(TEXT | st.sampled_from(["u1", "u2"])), draw(st.sampled_from(item_ids) | TEXT),
         draw(PLAUSIBLE_TIME | NUMBER), draw(st.sampled_from(["1", "2.5", "5"]) | NUMBER))
        for _ in range(draw(st.integers(1, 6)))
    ]
    return items, logs, draw(st.sampled_from(["csv", "jsonl"]))


def write(path, header, rows, kind):
    if kind == "csv":
        with path.open("w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows([header, *rows])
    else:
        path.write_text("".join(json.dumps(dict(zip(header, row))) + "\n" for row in rows), encoding="utf-8")


def load(tmp_path, kind, on_bad_rows="error"):
    files = f"interactions={tmp_path / f'logs.{kind}'},items={tmp_path / f'items.{kind}'}"
    try:
        return data.load(f"table:{files}", on_bad_rows=on_bad_rows)
    except errors.DataError as error:
        assert str(error).strip(), f"{type(error).__name__} without a message"
        return None


def written(logs):
    """The rows a correct parse gives: ids stripped, times floored seconds, ratings numbers (rows whose
    time or rating is not a finite number are in no correct parse)."""
    rows = collections.Counter()
    for user, item, time, rating in logs:
        try:
            rows[user.strip(), item.strip(), math.floor(float(time)), float(np.float32(rating))] += 1
        except (ValueError, OverflowError):
            pass
    return rows


def parsed(ds):
    frame = ds.interactions
    return collections.Counter(
        zip(frame.user_id, frame.item_id, frame.timestamp.astype(int), frame.rating.astype(float))
    )


@SETTINGS
@given(tables())
def test_random_tables_parse_exactly_or_raise_a_data_error(tmp_path, table):
    items, logs, kind = table
    write(tmp_path / f"items.{kind}", ("item_id", "title"), items, kind)
    write(tmp_path / f"logs.{kind}", ("user_id", "item_id", "timestamp", "rating"), logs, kind)
    ds = load(tmp_path, kind)
    if ds is not None:
        assert parsed(ds) == written(logs)
        catalogue = {(item_id.strip(), title.strip()) for item_id, title in items}
        assert set(zip(ds.items.item_id, ds.items.title)) == catalogue
    skipping = load(tmp_path, kind, on_bad_rows="skip")
    if skipping is not None:  # the rows kept are rows written, the others counted
        assert not parsed(skipping) - written(logs)
        assert len(skipping.interactions) + sum(skipping.skipped.values()) >= len(logs)


HEADERS = {"logs": b"user_id,item_id,timestamp\n", "items": b"item_id,title\n"}


@SETTINGS
@given(st.binary(max_size=80), st.binary(max_size=80), st.sampled_from(["csv", "jsonl"]), st.booleans())
def test_random_bytes_raise_a_data_error_or_parse(tmp_path, logs, items, kind, headers):
    for name, body in (("logs", logs), ("items", items)):
        prefix = HEADERS[name] if headers and kind == "csv" else b""
        (tmp_path / f"{name}.{kind}").write_bytes(prefix + body)
    for on_bad_rows in ("error", "skip"):
        ds = load(tmp_path, kind, on_bad_rows)
        if ds is not None:
            assert len(ds.interactions) and set(ds.interactions.item_id) <= set(ds.items.item_id)
            ids = "".join(ds.interactions.user_id) + "".join(ds.items.item_id)
            assert ds.interactions.user_id.all() and not any(unicodedata.category(c) == "Cc" for c in ids)


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_table_of_every_awkward_character_round_trips(tmp_path, kind):
    awkward = [c for c in AWKWARD_CHARACTERS if c.isprintable() and c.strip() and c != "\ufeff"]
    items = [(f"i{n}{c}", f"title {c}") for n, c in enumerate(awkward)]
    logs = [(f"u{c}", f"i{n}{c}", str(1_600_000_000 + n), "3") for n, c in enumerate(awkward)]
    write(tmp_path / f"items.{kind}", ("item_id", "title"), items, kind)
    write(tmp_path / f"logs.{kind}", ("user_id", "item_id", "timestamp", "rating"), logs, kind)
    assert parsed(load(tmp_path, kind)) == written(logs)
