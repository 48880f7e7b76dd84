"""Tables as compressed files, globs and Hive-partitioned folders; files that are not regular files."""

import os

import pandas as pd
import pyarrow as pa
import pytest

from tfrec import data
from tfrec.data import errors, readers, schema

LOGS = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2", "u3"], "item_id": ["a", "b", "a", "c", "b"],
                     "timestamp": [10, 20, 10, 30, 40]})
ITEMS = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["Mug", "Cup", "Jar"]})


def write(frame, path):
    """Writes `frame` as the file `path` names, compressed when its name ends in .gz, .bz2 or .zst."""
    codec = readers.COMPRESSIONS.get(path.suffix)
    plain = path.with_suffix("") if codec else path
    if plain.suffix == ".parquet":
        frame.to_parquet(plain)
    elif plain.suffix == ".jsonl":
        frame.to_json(plain, orient="records", lines=True)
    else:
        frame.to_csv(plain, sep="\t" if plain.suffix == ".tsv" else ",", index=False)
    if codec:
        with pa.output_stream(str(path), compression=codec) as out:
            out.write(plain.read_bytes())
        plain.unlink()
    return path


def load(logs, items, **options):
    return data.load(f"table:interactions={logs},items={items}", **options)


@pytest.mark.parametrize("suffix", [".csv.gz", ".tsv.bz2", ".jsonl.zst"])
def test_compressed_tables_load_as_the_plain_files(tmp_path, suffix):
    ds = load(write(LOGS, tmp_path / f"logs{suffix}"), write(ITEMS, tmp_path / f"items{suffix}"))
    plain = load(write(LOGS, tmp_path / "logs.csv"), write(ITEMS, tmp_path / "items.csv"))
    pd.testing.assert_frame_equal(ds.interactions, plain.interactions)
    pd.testing.assert_frame_equal(ds.items, plain.items)


def test_a_row_error_in_a_compressed_file_names_its_line(tmp_path):
    logs = write(pd.concat([LOGS, pd.DataFrame({"user_id": ["u4"], "item_id": ["zz"], "timestamp": [5]})]),
                 tmp_path / "logs.csv.gz")
    with pytest.raises(errors.UnknownItemError, match=r"logs.csv.gz, row 7, field 'item_id': got 'zz'"):
        load(logs, write(ITEMS, tmp_path / "items.csv"))


def test_a_corrupt_compressed_file_is_named(tmp_path):
    (tmp_path / "logs.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(errors.SourceError, match=r"logs.csv.gz: not a readable gzip file"):
        load(tmp_path / "logs.csv.gz", write(ITEMS, tmp_path / "items.csv"))


def test_hive_partitioned_parquet_folder_gives_partition_columns(tmp_path):
    """Spark's layout: KEY=VALUE folders, part files, a _SUCCESS marker; the partition is a column."""
    logs = tmp_path / "events"
    for month, part in LOGS.groupby(LOGS.timestamp >= 20):
        (logs / f"month=2024-0{int(month) + 1}").mkdir(parents=True)
        part.to_parquet(logs / f"month=2024-0{int(month) + 1}" / "part-0.parquet")
    (logs / "_SUCCESS").touch()
    items = tmp_path / "items"
    for shelf, part in ITEMS.assign(shelf=["kitchen", "kitchen", "pantry"]).groupby("shelf"):
        (items / f"shelf={shelf}").mkdir(parents=True)
        part.drop(columns="shelf").to_parquet(items / f"shelf={shelf}" / "part-00000.parquet")
    raw = readers.read_table(logs)
    assert sorted(zip(raw.frame.user_id, raw.frame.month)) == [
        ("u1", "2024-01"), ("u1", "2024-02"), ("u2", "2024-01"), ("u2", "2024-02"), ("u3", "2024-02")]
    matched = readers.read_table(logs / "month=*" / "*.parquet")
    assert sorted(matched.frame.month) == ["2024-01", "2024-01", "2024-02", "2024-02", "2024-02"]
    ds = load(logs, items, columns=data.ColumnMap(text=("title", "shelf")))
    assert ds.interactions.sort_values(["user_id", "timestamp"]).item_id.tolist() == ["a", "b", "a", "c", "b"]
    assert ds.items.to_dict("list")["text.shelf"] == ["kitchen", "kitchen", "pantry"]


def test_a_glob_reads_every_file_and_errors_name_the_file_and_its_row(tmp_path):
    write(LOGS[:2], tmp_path / "logs-1.csv")
    write(pd.concat([LOGS[2:], pd.DataFrame({"user_id": ["u4"], "item_id": ["zz"], "timestamp": [5]})]),
          tmp_path / "logs-2.csv")
    items = write(ITEMS, tmp_path / "items.csv")
    with pytest.raises(errors.UnknownItemError, match=r"logs-2.csv, row 5, field 'item_id': got 'zz'.*on_bad_rows"):
        load(tmp_path / "logs-*.csv", items)
    ds = load(tmp_path / "logs-*.csv", items, on_bad_rows="skip")
    assert len(ds.interactions) == 5 and ds.skipped == {"unknown_item": 1}
    with pytest.raises(errors.SourceError, match="no file matches this pattern"):
        load(tmp_path / "nothing-*.csv", items)


def test_a_table_of_mixed_formats_is_refused(tmp_path):
    (tmp_path / "logs").mkdir()
    write(LOGS, tmp_path / "logs" / "a.csv")
    write(LOGS, tmp_path / "logs" / "b.parquet")
    with pytest.raises(errors.SourceError, match=r"expected files of one format, got \['csv', 'parquet'\]"):
        readers.read_table(tmp_path / "logs")


def test_files_that_are_not_regular_files_are_named_for_what_they_are(tmp_path):
    items = write(ITEMS, tmp_path / "items.csv")
    os.mkfifo(tmp_path / "logs.csv")  # reading it would block until a writer comes
    with pytest.raises(errors.SourceError, match=r"logs.csv: is a named pipe \(FIFO\), expected a regular file"):
        load(tmp_path / "logs.csv", items)
    with pytest.raises(errors.SourceError, match=r"/dev/null: is a character device"):
        load("/dev/null", items)
    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.SourceError, match=r"empty: the folder holds no table files"):
        load(tmp_path / "empty", items)
    unreadable = write(LOGS, tmp_path / "unreadable.csv")
    unreadable.chmod(0)
    if not os.access(unreadable, os.R_OK):  # root reads it anyway
        with pytest.raises(errors.SourceError, match=r"unreadable.csv: cannot read the file \(permission denied\)"):
            load(unreadable, items)
    with pytest.raises(errors.SourceError, match=r"missing.csv: file not found"):
        load(tmp_path / "missing.csv", items)
    with pytest.raises(errors.SourceError, match=r"unknown table format '.txt.gz'"):
        load(write(LOGS, tmp_path / "logs.txt.gz"), items)


def test_a_jsonl_key_given_twice_is_refused_naming_row_and_key(tmp_path):
    (tmp_path / "items.jsonl").write_text(
        '{"item_id": "a", "title": "Mug"}\n'
        '{"item_id": "b", "title": {"item_id": "nested keys are their own object"}}\n'
        '{"item_id": "c", "title": "Jar", "title": "Jar, large"}\n')
    with pytest.raises(errors.MalformedRowError, match=r"items.jsonl, row 3: got 'title', expected each key once"):
        readers.read_table(tmp_path / "items.jsonl")
    checker = errors.RowChecker("skip")
    assert readers.read_table(tmp_path / "items.jsonl", checker).rows.tolist() == [1, 2]
    assert checker.skipped == {"malformed_row": 1}


def test_ids_are_nfc_normalised(tmp_path):
    """"café" with a combining accent (NFD) and with "é" (NFC) print alike: one id."""
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    logs = write(pd.DataFrame({"user_id": ["u1", "u1"], "item_id": [nfd, "b"], "timestamp": [1, 2],
                               "event": ["Vue " + nfd, "vue " + nfc]}), tmp_path / "logs.csv")
    ds = load(logs, write(pd.DataFrame({"item_id": [nfc, "b"], "title": ["Café", "B"]}), tmp_path / "items.csv"))
    assert ds.interactions[schema.ITEM_ID].tolist() == [nfc, "b"]
    assert ds.interactions[schema.EVENT].tolist() == ["vue " + nfc] * 2  # events too: one event, lower case
    twins = write(pd.DataFrame({"item_id": [nfc, nfd], "title": ["A", "B"]}), tmp_path / "twins.csv")
    with pytest.raises(errors.DuplicateIdError, match=r"twins.csv, row 3, field 'item_id'.*not already on row 2"):
        load(logs, twins)
