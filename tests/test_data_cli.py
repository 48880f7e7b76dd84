"""`python -m tfrec.data describe|convert` end to end on small data."""

import json
import os
import pathlib
import subprocess
import sys

from tfrec.data import tfrecord

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE = "--source=synthetic:users=30,items=60,per_user=8,seed=1"


def run(*args, env=None):
    environment = {k: v for k, v in os.environ.items() if k != "TFREC_DATA_DIR"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "tfrec.data", *args], capture_output=True, text=True, cwd=ROOT, env=environment
    )


def test_describe_json_and_text():
    result = run("describe", SOURCE, "--split=random", "--format=json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["users"] == 30 and stats["items"] == 60 and stats["text_coverage"] == 1.0
    assert sum(stats["splits"].values()) == stats["interactions"]
    assert set(stats["events"]) == {"view", "click", "purchase"}
    text = run("describe", SOURCE, "--split=cold_items").stdout
    assert "text coverage       100.0% of items have a description" in text
    assert "cold items)" in text and "skipped rows        none" in text


def test_describe_without_data_says_how_to_provide_it():
    result = run("describe")
    assert result.returncode == 2
    # The library's `DataConfig.source=None: ...` names the flag on the command line.
    assert result.stderr.startswith("error: --source=None: no data given") and "DataConfig" not in result.stderr
    for hint in ("movielens:DIR", "TFREC_DATA_DIR", "tfds:"):
        assert hint in result.stderr


def test_describe_uses_tfrec_data_dir(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,10\n1,2,3.0,20\n1,1,5.0,30\n")
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,One,Drama\n2,Two,Comedy\n")
    result = run("describe", "--format=json", env={"TFREC_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"] == f"movielens:{tmp_path}"


def test_bad_data_exits_with_the_error_message(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,10\n1,7,3.0,20\n")
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,One,Drama\n")
    result = run("describe", f"--source=movielens:{tmp_path}")
    assert result.returncode == 2
    assert "ratings.csv, row 3, field 'item_id': got '7', expected an item_id of the catalogue" in result.stderr
    skipped = run("describe", f"--source=movielens:{tmp_path}", "--on_bad_rows=skip", "--format=json")
    assert json.loads(skipped.stdout)["skipped"] == {"unknown_item": 1}


def test_convert_writes_complete_shards(tmp_path):
    out = tmp_path / "records"
    result = run("convert", SOURCE, f"--output_dir={out}", "--num_shards=2", "--history_length=4", "--chunk_size=7")
    assert result.returncode == 0, result.stderr
    metadata = json.loads((out / tfrecord.METADATA_FILE).read_text())
    assert metadata["history_length"] == 4 and metadata["split"] == "leave_last_out"
    assert {name: s["examples"] for name, s in metadata["splits"].items()}["test"] == 30
    assert sorted(p.name for p in out.glob("*.tfrecord"))[:2] == [
        "test-00000-of-00002.tfrecord",
        "test-00001-of-00002.tfrecord",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["records"]
    modes = {oct(p.stat().st_mode & 0o777) for p in [out, *out.iterdir()]}
    assert modes <= {oct(0o755), oct(0o644)}, modes  # the umask's modes (022 here), not mkdtemp's private ones


def test_convert_replaces_only_an_earlier_conversion(tmp_path):
    out = tmp_path / "records"
    args = ("convert", SOURCE, f"--output_dir={out}", "--num_shards=1", "--history_length=4")
    assert run(*args).returncode == 0
    again = run(*args)
    assert again.returncode != 0 and "is not empty" in again.stderr and "--overwrite" in again.stderr
    assert run(*args, "--overwrite").returncode == 0
    (out / "notes.txt").write_text("mine")
    refused = run(*args, "--overwrite")
    assert refused.returncode != 0 and "holds 'notes.txt', which no conversion writes" in refused.stderr
    assert (out / "notes.txt").read_text() == "mine" and (out / tfrecord.METADATA_FILE).exists()


def test_table_source_with_column_flags(tmp_path):
    (tmp_path / "logs.tsv").write_text("who\twhat\twhen\tstars\nu1\tb\t2024-01-02\t4\nu1\ta\t2024-01-01\t9\n")
    (tmp_path / "items.jsonl").write_text('{"what": "a", "name": "A", "tags": ["x", "y"]}\n{"what": "b", "name": "B"}\n')
    source = f"--source=table:interactions={tmp_path / 'logs.tsv'},items={tmp_path / 'items.jsonl'}"
    columns = ["--user_col=who", "--item_col=what", "--time_col=when", "--rating_col=stars", "--title_col=name",
               "--genres_col=tags", "--time_format=%Y-%m-%d"]  # fmt: skip
    result = run("describe", source, *columns, "--format=json", "--rating_range=1,5", "--on_bad_rows=skip")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert (stats["interactions"], stats["items"], stats["skipped"]) == (1, 2, {"rating_out_of_range": 1})
    failed = run("describe", source, *columns, "--rating_range=1,5")
    assert "logs.tsv, row 3, field 'rating': got '9', expected a number in [1, 5]" in failed.stderr
    missing = run("describe", source, *[c for c in columns if not c.startswith("--time_col")])
    assert missing.returncode == 2
    assert "needs a 'timestamp' column (or name its column with --time_col=...)" in missing.stderr


def test_invalid_data_flag_is_named():
    result = run("describe", SOURCE, "--history_length=0")
    assert result.returncode == 2
    assert "error: --history_length=0: expected a value >= 1" in result.stderr


def test_describe_reads_a_compressed_log_and_a_partitioned_catalogue(tmp_path):
    """A `.csv.gz` log and a Spark-style Parquet folder; describe names the text read and not read."""
    import gzip

    import pandas as pd

    (tmp_path / "events.csv.gz").write_bytes(gzip.compress(
        b"sku,customer,ts\n1,c1,10\n2,c1,20\n3,c1,30\n1,c2,15\n3,c2,25\n2,c2,35\n"))
    for shelf, skus in (("kitchen", ["1", "2"]), ("garden", ["3"])):
        (tmp_path / "items" / f"shelf={shelf}").mkdir(parents=True)
        part = pd.DataFrame({"sku": skus, "title": [f"Item {s}" for s in skus], "brand": ["Acme"] * len(skus),
                             "price": ["9.5"] * len(skus)})
        part.to_parquet(tmp_path / "items" / f"shelf={shelf}" / "part-0.parquet")
    (tmp_path / "items" / "_SUCCESS").touch()
    source = f"--source=table:interactions={tmp_path / 'events.csv.gz'},items={tmp_path / 'items'}"
    flags = [source, "--item_col=sku", "--user_col=customer", "--time_col=ts"]
    result = run("describe", *flags)
    assert result.returncode == 0, result.stderr
    assert ("item text           read: title; other text columns not read: brand, shelf (add them with "
            "--text_cols, e.g. --text_cols=title,brand)") in result.stdout
    stats = json.loads(run("describe", *flags, "--text_cols=title,shelf", "--format=json").stdout)
    assert stats["interactions"] == 6 and stats["items"] == 3
    assert stats["text_columns"] == {"read": ["title", "shelf"], "not_read": ["brand"]}
    unknown = run("describe", *flags, "--text_cols=title,colour")
    assert unknown.returncode == 2 and "(--text_cols=colour) is not there; the files have" in unknown.stderr
    assert "DataConfig" not in unknown.stderr


def test_a_bad_delimiter_is_one_line_naming_the_flag():
    result = run("describe", SOURCE, "--delimiter=ab")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: --delimiter='ab': expected one character other than a quote or a line "
                                     "end, e.g. ';' or a tab")
