"""The cases `bench_reliability.py` replays, each with what it expects, and how an attempt is judged.

A case expects a refusal whose message matches every one of its patterns (the
file, row, field or input it must name), or a success whose result passes its
check, or (for behaviours where either is right, such as exact duplicate rows)
one of the two. `judge` turns an `Attempt` into one of `OUTCOMES`.

Example:

>>> expect = Expect(refuse=(r"items\\.csv", r"\\brow 3\\b", "title"))
>>> judge(expect, Attempt(False, "items.csv, row 3, field 'title': got '', expected a non-empty value"))
'handled'
>>> judge(expect, Attempt(True, "ok"))
'silently_wrong'
"""

import dataclasses
import io
import os
import re
import unicodedata
from typing import Callable, Optional

import pandas as pd

OUTCOMES = ("handled", "silently_wrong", "crash", "hang", "unclear", "refused")
"""handled: the expected refusal naming what it should, or a success whose result is checked right;
silently_wrong: a success where a refusal was needed, or a wrong result; crash: a traceback, a signal,
INTERNAL/UNKNOWN or HTTP 500; hang: over the case's timeout; unclear: refused without naming what the
case expects; refused: a valid case refused."""


@dataclasses.dataclass
class Expect:
    """What a case must do.

    Attributes:
        refuse: regexes a refusal's message must all match (searched, case-insensitive); empty: the
            case is valid and must not be refused.
        check: on success, a function of the attempt's facts returning what is wrong (str) or None;
            None: a success is wrong.
        says: the check in words, for the table.
    """

    refuse: tuple = ()
    check: Optional[Callable] = None
    says: str = ""

    def __post_init__(self):
        if not self.refuse and self.check is None:
            raise ValueError("an Expect needs refuse patterns, a check, or both")

    def describe(self) -> str:
        parts = [f"refuse /{' & '.join(self.refuse)}/"] if self.refuse else []
        if self.check is not None:
            parts.append(f"ok: {self.says}" if self.says else "ok")
        return " or ".join(parts)


@dataclasses.dataclass
class Attempt:
    """What running a case gave: accepted or refused (with its message), and the facts a check reads."""

    accepted: bool
    message: str = ""
    facts: object = None
    crash: bool = False
    hang: bool = False


def judge(expect: Expect, attempt: Attempt) -> str:
    """The outcome (one of `OUTCOMES`) of `attempt` for a case expecting `expect`; a wrong result's
    reason is prepended to `attempt.message`."""
    if attempt.hang:
        return "hang"
    if attempt.crash:
        return "crash"
    if attempt.accepted:
        if expect.check is None:
            return "silently_wrong"
        problem = expect.check(attempt.facts)
        if problem:
            attempt.message = f"{problem}; {attempt.message}"
            return "silently_wrong"
        return "handled"
    if not expect.refuse:
        return "refused"
    return "handled" if all(re.search(p, attempt.message, re.IGNORECASE | re.DOTALL) for p in expect.refuse) \
        else "unclear"


# ---------------------------------------------------------------- data files

FIFO, FOLDER = "a named pipe", "a folder"
"""File contents that are no bytes: `write_files` makes a FIFO or an empty folder of that name."""


@dataclasses.dataclass
class DataCase:
    """Files of a table source (role -> (file name, bytes, `FIFO` or `FOLDER`); an absolute name is used as it
    is) and the `tfrec.data` flags to read them with."""

    name: str
    files: dict
    expect: Expect
    flags: tuple = ()

    def argv(self, directory) -> list:
        """The `python -m tfrec.data describe` flags reading the files from `directory`."""
        roles = ",".join(f"{role}={os.path.join(directory, file)}" for role, (file, _) in self.files.items())
        return [f"--source=table:{roles}", "--history_length=5", *self.flags]


NUM_ITEMS, NUM_USERS, PER_USER = 8, 4, 5
NUM_LOGS = NUM_USERS * PER_USER
BASE_TIME = 1_600_000_000


def _time(user, j):
    return BASE_TIME + user * 10_000 + j * 60


def log_row(user, j):
    """1-based row, in the interactions CSV (header = row 1), of user `user`'s `j`-th behaviour."""
    return 2 + (user - 1) * PER_USER + j


def base_records():
    """The valid interaction records (user, item, timestamp, rating) and item records (item, title, genres)."""
    logs = [(str(u), str((u * 3 + j) % NUM_ITEMS + 1), str(_time(u, j)), str((u + j) % 5 + 1))
            for u in range(1, NUM_USERS + 1) for j in range(PER_USER)]
    items = [(str(i), f"Item {i} title", "Drama|Comedy") for i in range(1, NUM_ITEMS + 1)]
    return logs, items


LOG_HEADER = ("user_id", "item_id", "timestamp", "rating")
ITEM_HEADER = ("item_id", "title", "genres")


def delimited(header, records, sep=",", newline="\n", encoding="utf-8") -> bytes:
    return "".join(sep.join(r) + newline for r in [header, *records]).encode(encoding)


def base_files(sep=",", ext="csv"):
    logs, items = base_records()
    return {"interactions": (f"interactions.{ext}", delimited(LOG_HEADER, logs, sep)),
            "items": (f"items.{ext}", delimited(ITEM_HEADER, items, sep))}


def edit(data: bytes, row: int, field: str, value, sep=b",") -> bytes:
    """`data` (a delimited file with a header) with `field` of 1-based `row` set to `value` (str or bytes)."""
    lines = data.split(b"\n")
    column = lines[0].decode().split(sep.decode()).index(field)
    fields = lines[row - 1].split(sep)
    fields[column] = value if isinstance(value, bytes) else value.encode()
    lines[row - 1] = sep.join(fields)
    return b"\n".join(lines)


def with_line(data: bytes, row: int, text: str, insert=False) -> bytes:
    """`data` with its 1-based line `row` replaced by `text` (or `text` inserted there)."""
    lines = data.split(b"\n")
    lines[row - 1:row - 1 if insert else row] = [text.encode()]
    return b"\n".join(lines)


def with_files(**changes):
    """The base CSV files with some replaced: role=(file name, bytes) or role=bytes (same file name)."""
    files = base_files()
    for role, change in changes.items():
        files[role] = change if isinstance(change, tuple) else (files[role][0], change)
    return files


def edited(role, row, field, value, **extra):
    files = base_files()
    return with_files(**{role: edit(files[role][1], row, field, value)}, **extra)


def frames():
    logs, items = base_records()
    log_frame = pd.DataFrame(logs, columns=LOG_HEADER).astype({"timestamp": "int64", "rating": "float64"})
    return log_frame, pd.DataFrame(items, columns=ITEM_HEADER)


def parquet(frame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def jsonl(frame) -> bytes:
    return frame.to_json(orient="records", lines=True).encode()


def counts(interactions=NUM_LOGS, items=NUM_ITEMS, skipped=None):
    """A check: the data set has these sizes (and, if given, skipped-row counts per reason)."""

    def check(facts):
        got = (facts["interactions"], facts["items"])
        if got != (interactions, items):
            return f"read {got[0]} interactions and {got[1]} items, expected {interactions} and {items}"
        if skipped is not None and facts["skipped"] != skipped:
            return f"skipped {facts['skipped']}, expected {skipped}"
        return None

    return check


def counted_and(check_tables, **sizes):
    """A check of the sizes, then of the loaded tables (`facts["tables"]`, an `InteractionData`)."""
    sized = counts(**sizes)

    def check(facts):
        return sized(facts) or check_tables(facts["tables"])

    return check


def title_is(item, expected):
    def check(tables):
        title = tables.items.set_index("item_id").loc[item, "title"]
        return None if title == expected else f"item {item} has title {title[:60]!r}, expected {expected[:60]!r}"
    return check


def title_cut():
    """A check of the loaded tables: one title is over the limit load cuts titles at (it is counted)."""
    def check(tables):
        from tfrec.data import texts

        cut = texts.cut_counts(tables.items)["titles"]
        return None if cut == 1 else f"{cut} titles counted as cut, expected 1"
    return check


def one_id_per_nfc(tables):
    """A check of the loaded tables: no two catalogue ids print the same (equal after NFC)."""
    ids = [str(i) for i in tables.items.item_id]
    forms = {unicodedata.normalize("NFC", i) for i in ids}
    return None if len(forms) == len(ids) else f"{len(ids)} catalogue ids, {len(forms)} distinct after NFC"


def times_are(expected):
    def check(tables):
        got = sorted(tables.interactions.timestamp.tolist())
        return None if got == sorted(expected) else f"timestamps {got[:3]}..., expected {sorted(expected)[:3]}..."
    return check


def dropped_duplicate(facts):
    """A check: the repeated row was dropped and counted under a duplicate reason."""
    if not any("duplicate" in reason for reason in facts["skipped"]):
        return f"read {facts['interactions']} interactions, no duplicate counted in skipped {facts['skipped']}"
    return counts()(facts)


def ok(says="all 20 interactions and 8 items", check=None):
    return Expect(check=check or counts(), says=says)


def refuse(*patterns):
    return Expect(refuse=patterns)


def at(file, row, field):
    """Patterns of a refusal naming `file`, `row` and `field`."""
    return refuse(re.escape(file), rf"\brow {row}\b", field)


def data_cases() -> list:
    """Every data-file case (the kinds of issue items 11 and 12, and their variations)."""
    logs, items = base_records()
    log_frame, item_frame = frames()
    files = base_files()
    L, I = files["interactions"][1], files["items"][1]
    r = log_row(2, 3)  # a row in the middle
    dup = logs[:]
    dup.insert(6, logs[5])  # row 8 repeats row 7
    conflict = logs[:]
    conflict.insert(6, logs[5][:3] + ("1" if logs[5][3] != "1" else "2",))  # same (user, item, time), other rating
    quoted = items[:]
    quoted[2] = (items[2][0], '"Unclosed title, Drama', items[2][2])
    quoted_logs = logs[:]
    quoted_logs[4] = ('"2', *logs[4][1:])
    big = "x" * (200 << 10)
    huge = "x" * (5 << 20)
    cafe = [(unicodedata.normalize(form, "caf\u00e9"), f"Cafe {form}", "Drama") for form in ("NFC", "NFD")]
    ms = [(u, i, t + "000", rt) for u, i, t, rt in logs]
    iso = [(u, i, pd.Timestamp(int(t), unit="s").strftime("%Y-%m-%dT%H:%M:%S"), rt) for u, i, t, rt in logs]
    times = [int(t) for _, _, t, _ in logs]
    cases = [
        # valid files: read right
        DataCase("baseline CSV", files, ok()),
        DataCase("TSV files", base_files("\t", "tsv"), ok()),
        DataCase("semicolon CSV with --delimiter=;", base_files(";"), ok(), ("--delimiter=;",)),
        DataCase("JSON lines files", with_files(interactions=("interactions.jsonl", jsonl(log_frame)),
                                                items=("items.jsonl", jsonl(item_frame))), ok()),
        DataCase("Parquet files", with_files(interactions=("interactions.parquet", parquet(log_frame)),
                                             items=("items.parquet", parquet(item_frame))), ok()),
        DataCase("Parquet datetime timestamps", with_files(interactions=("interactions.parquet", parquet(
            log_frame.assign(timestamp=pd.to_datetime(log_frame.timestamp, unit="s"))))),
            ok("timestamps as Unix seconds", counted_and(times_are(times)))),
        DataCase("Parquet integer ids", with_files(interactions=("interactions.parquet", parquet(
            log_frame.astype({"user_id": "int64", "item_id": "int64"})))), ok()),
        DataCase("UTF-8 BOM in the interactions file", with_files(interactions=b"\xef\xbb\xbf" + L), ok()),
        DataCase("UTF-8 BOM in the items file", with_files(items=b"\xef\xbb\xbf" + I), ok()),
        DataCase("CRLF line ends", with_files(interactions=L.replace(b"\n", b"\r\n"),
                                              items=I.replace(b"\n", b"\r\n")), ok()),
        DataCase("trailing blank lines", with_files(interactions=L + b"\n\n\n"), ok()),
        DataCase("quoted title with comma and newline", edited("items", 4, "title", '"Heat, 1995\nRemastered"'),
                 ok("the title kept whole", counted_and(title_is("3", "Heat, 1995\nRemastered")))),
        DataCase("CSV field over 128 KiB", edited("items", 3, "title", big),
                 ok("the 200 KiB title kept", counted_and(title_is("2", big)))),
        DataCase("5 MB title", edited("items", 4, "title", huge),
                 ok("the title cut at load and counted", counted_and(title_cut()))),
        DataCase("UTF-8 titles", edited("items", 2, "title", "Amélie — 天気の子"),
                 ok("the title decoded", counted_and(title_is("1", "Amélie — 天気の子")))),
        DataCase("columns reordered plus an extra one", with_files(interactions=delimited(
            ("extra", "rating", "timestamp", "item_id", "user_id"),
            [("x", rt, t, i, u) for u, i, t, rt in logs])), ok()),
        DataCase("renamed columns with --user_col/--item_col/--time_col", with_files(
            interactions=delimited(("customer", "sku", "ts", "rating"), logs),
            items=delimited(("sku", "title", "genres"), items)),
            ok(), ("--user_col=customer", "--item_col=sku", "--time_col=ts")),
        DataCase("ISO times with --time_format=iso", with_files(interactions=delimited(LOG_HEADER, iso)),
                 ok("ISO times as Unix seconds", counted_and(times_are(times))), ("--time_format=iso",)),
        DataCase("milliseconds with --time_format=unix_ms", with_files(interactions=delimited(LOG_HEADER, ms)),
                 ok("milliseconds as Unix seconds", counted_and(times_are(times))), ("--time_format=unix_ms",)),
        DataCase("fractional ratings", edited("interactions", r, "rating", "3.5"), ok()),
        DataCase("string ids", with_files(
            interactions=delimited(LOG_HEADER, [(f"user-{u}", f"sku-{i}", t, rt) for u, i, t, rt in logs]),
            items=delimited(ITEM_HEADER, [(f"sku-{i}", t, g) for i, t, g in items])), ok()),
        DataCase("users file", with_files(users=("users.csv", delimited(
            ("user_id", "age"), [(str(u), str(20 + u)) for u in range(1, NUM_USERS + 1)]))), ok()),
        DataCase("event column", with_files(interactions=delimited(
            (*LOG_HEADER, "event"), [(*rec, "click") for rec in logs])), ok()),
        DataCase("description without title", with_files(items=delimited(
            ("item_id", "description"), [(i, f"About item {i}") for i, _, _ in items])), ok()),
        DataCase("genres as JSON lists", with_files(items=("items.jsonl", jsonl(
            item_frame.assign(genres=[["Drama", "Comedy"]] * NUM_ITEMS)))), ok()),
        DataCase("non-UTF-8 title with --on_bad_rows=skip", edited("items", 5, "title", b"Caf\xe9 \xff"),
                 Expect(check=counts(NUM_LOGS - sum(i == "4" for _, i, _, _ in logs), NUM_ITEMS - 1,
                                     {"undecodable_text": 1, "unknown_item": sum(i == "4" for _, i, _, _ in logs)}),
                        says="the row skipped and counted"), ("--on_bad_rows=skip",)),
        DataCase("bad rating with --on_bad_rows=skip", edited("interactions", r, "rating", "five"),
                 Expect(check=counts(NUM_LOGS - 1, skipped={"wrong_type": 1}), says="the row skipped and counted"),
                 ("--on_bad_rows=skip",)),
        # issue item 11
        DataCase("exact duplicate rows", with_files(interactions=delimited(LOG_HEADER, dup)), Expect(
            refuse=(r"interactions\.csv", r"\brow 8\b", "duplicate"),
            check=dropped_duplicate, says="dropped and counted")),
        DataCase("same (user, item, time) with different ratings", with_files(
            interactions=delimited(LOG_HEADER, conflict)), at("interactions.csv", 8, "rating")),
        DataCase("milliseconds in a seconds column", with_files(interactions=delimited(LOG_HEADER, ms)),
                 at("interactions.csv", 2, "timestamp")),
        DataCase("one millisecond time among seconds", edited("interactions", r, "timestamp", logs[0][2] + "000"),
                 at("interactions.csv", r, "timestamp")),
        DataCase("time in year ~318,000", edited("interactions", r, "timestamp", "9999999999999"),
                 at("interactions.csv", r, "timestamp")),
        DataCase("time in year ~5000", edited("interactions", r, "timestamp", "95000000000"),
                 at("interactions.csv", r, "timestamp")),
        DataCase("NUL byte in an item id", edited("interactions", r, "item_id", b"3\x00"),
                 at("interactions.csv", r, "item_id")),
        DataCase("NUL byte in a user id", edited("interactions", r, "user_id", b"\x002"),
                 at("interactions.csv", r, "user_id")),
        DataCase("NUL byte in a catalogue id", edited("items", 4, "item_id", b"3\x00"), at("items.csv", 4, "item_id")),
        DataCase("unclosed quote in the items file", with_files(items=delimited(ITEM_HEADER, quoted)),
                 refuse(r"items\.csv", r"\brow 4\b", "quote")),
        DataCase("unclosed quote in the interactions file", with_files(interactions=delimited(LOG_HEADER, quoted_logs)),
                 refuse(r"interactions\.csv", r"\brow 6\b", "quote")),
        # issue item 12 and other refusals
        DataCase("header-only interactions CSV", with_files(interactions=delimited(LOG_HEADER, [])),
                 refuse(r"interactions\.csv", "no interactions|no rows|empty")),
        DataCase("header-only items CSV", with_files(items=delimited(ITEM_HEADER, [])),
                 refuse(r"items\.csv|interactions\.csv", "no interactions|no rows|empty|catalogue")),
        DataCase("empty interactions file", with_files(interactions=b""), refuse(r"interactions\.csv", "header")),
        DataCase("empty items file", with_files(items=b""), refuse(r"items\.csv", "header")),
        DataCase("no user_id column", with_files(interactions=delimited(
            LOG_HEADER[1:], [rec[1:] for rec in logs])), refuse(r"interactions\.csv", "user_id")),
        DataCase("no timestamp column", with_files(interactions=delimited(
            ("user_id", "item_id", "rating"), [(u, i, rt) for u, i, _, rt in logs])),
            refuse(r"interactions\.csv", "timestamp")),
        DataCase("items without title or description", with_files(items=delimited(
            ("item_id", "genres"), [(i, g) for i, _, g in items])), refuse(r"items\.csv", "title")),
        DataCase("--user_col naming an absent column", files, refuse(r"interactions\.csv", "customer"),
                 ("--user_col=customer",)),
        DataCase("--text_cols naming an absent column", files, refuse(r"items\.csv", "brand"),
                 ("--text_cols=brand",)),
        DataCase("non-numeric rating", edited("interactions", r, "rating", "five"), at("interactions.csv", r, "rating")),
        DataCase("NaN rating", edited("interactions", r, "rating", "nan"), at("interactions.csv", r, "rating")),
        DataCase("infinite rating", edited("interactions", r, "rating", "inf"), at("interactions.csv", r, "rating")),
        DataCase("rating outside --rating_range", edited("interactions", r, "rating", "7"),
                 at("interactions.csv", r, "rating"), ("--rating_range=1,5",)),
        DataCase("empty rating", edited("interactions", r, "rating", ""), at("interactions.csv", r, "rating")),
        DataCase("empty timestamp", edited("interactions", r, "timestamp", ""), at("interactions.csv", r, "timestamp")),
        DataCase("timestamp 'yesterday'", edited("interactions", r, "timestamp", "yesterday"),
                 at("interactions.csv", r, "timestamp")),
        DataCase("timestamp 1e14", edited("interactions", r, "timestamp", "1e14"),
                 at("interactions.csv", r, "timestamp")),
        DataCase("impossible ISO date", with_files(interactions=edit(delimited(LOG_HEADER, iso), r, "timestamp",
                                                                     "2020-13-45T00:00:00")),
                 at("interactions.csv", r, "timestamp"), ("--time_format=iso",)),
        DataCase("row with too many fields", edited("interactions", r, "rating", "4,9"),
                 refuse(r"interactions\.csv", rf"\brow {r}\b", "fields")),
        DataCase("row with too few fields", with_files(interactions=with_line(L, r, ",".join(logs[r - 2][:2]))),
                 refuse(r"interactions\.csv", rf"\brow {r}\b", "fields")),
        DataCase("unknown item id", edited("interactions", r, "item_id", "99"), at("interactions.csv", r, "item_id")),
        DataCase("duplicate catalogue id", edited("items", 5, "item_id", "3"), at("items.csv", 5, "item_id")),
        DataCase("item with empty title and genres", with_files(items=edit(edit(I, 4, "title", ""), 4, "genres", "")),
                 at("items.csv", 4, "title")),
        DataCase("empty user id", edited("interactions", r, "user_id", ""), at("interactions.csv", r, "user_id")),
        DataCase("non-UTF-8 title", edited("items", 5, "title", b"Caf\xe9 \xff"), at("items.csv", 5, "title")),
        DataCase("non-UTF-8 user id", edited("interactions", r, "user_id", b"\xff\xfe"),
                 at("interactions.csv", r, "user_id")),
        DataCase("Latin-1 items file", with_files(items=delimited(
            ITEM_HEADER, [(i, f"Café {i}", g) for i, _, g in items], encoding="latin-1")),
            at("items.csv", 2, "title")),
        DataCase("UTF-16 interactions file", with_files(interactions=delimited(LOG_HEADER, logs, encoding="utf-16")),
                 refuse(r"interactions\.csv", "user_id|UTF|encod")),
        DataCase("tab-separated file named .csv", with_files(interactions=base_files("\t")["interactions"][1]),
                 refuse(r"interactions\.csv", "user_id")),
        DataCase("duplicate header column", with_files(interactions=delimited(
            ("user_id", "user_id", "item_id", "timestamp"), [(u, u, i, t) for u, i, t, _ in logs])),
            refuse(r"interactions\.csv", "user_id", "duplicate|twice|more than once")),
        DataCase("JSON lines: a malformed line", with_files(interactions=(
            "interactions.jsonl", with_line(jsonl(log_frame), 4, "{oops", insert=True))),
            refuse(r"interactions\.jsonl", r"\brow 4\b", "JSON")),
        DataCase("JSON lines: an array line", with_files(interactions=("interactions.jsonl",
                                                                       jsonl(log_frame) + b'["1", "2", 3]\n')),
                 refuse(r"interactions\.jsonl", rf"\brow {NUM_LOGS + 1}\b", "JSON object")),
        DataCase("JSON lines: a duplicate key", with_files(interactions=(
            "interactions.jsonl", with_line(jsonl(log_frame), 4, '{"user_id": "1", "item_id": "7", '
                                            f'"timestamp": {logs[2][2]}, "rating": 3.0, "rating": 5.0}}'))),
            refuse(r"interactions\.jsonl", r"\brow 4\b", "rating", "once|repeated|duplicate")),
        DataCase("catalogue ids equal after NFC (caf\u00e9 NFC and NFD)", with_files(items=delimited(
            ITEM_HEADER, items + cafe)), Expect(refuse=(r"items\.csv", rf"\brow {NUM_ITEMS + 3}\b", "item_id"),
                                                check=counted_and(one_id_per_nfc), says="one id per NFC form")),
        DataCase("the interactions file is a folder", with_files(interactions=("interactions", FOLDER)),
                 refuse(r"interactions\b", "folder|directory")),
        DataCase("the interactions file is a FIFO", with_files(interactions=("interactions.csv", FIFO)),
                 refuse(r"interactions\.csv", "named pipe|FIFO")),
        DataCase("the interactions file is /dev/null", with_files(interactions=("/dev/null", b"")),
                 refuse("/dev/null", "character device|not a regular file")),
        DataCase("JSON lines: a blank line inside", with_files(interactions=(
            "interactions.jsonl", with_line(jsonl(log_frame), 2, "", insert=True))),
            refuse(r"interactions\.jsonl", r"\brow 2\b")),
        DataCase("JSON lines: boolean rating", with_files(interactions=("interactions.jsonl", jsonl(
            log_frame.astype({"rating": object}).assign(rating=[True] + [3.0] * (NUM_LOGS - 1))))),
            refuse(r"interactions\.jsonl", r"\brow 1\b", "rating")),
        DataCase("JSON lines: object as title", with_files(items=("items.jsonl", jsonl(
            item_frame.astype({"title": object}).assign(title=[{"en": "x"}] + ["t"] * (NUM_ITEMS - 1))))),
            refuse(r"items\.jsonl", r"\brow 1\b", "title")),
        DataCase("corrupt Parquet file", with_files(interactions=("interactions.parquet", b"PAR1" + bytes(100))),
                 refuse(r"interactions\.parquet", "Parquet")),
        DataCase("Parquet with a null item id", with_files(interactions=("interactions.parquet", parquet(
            log_frame.astype({"item_id": object}).assign(item_id=[None] + log_frame.item_id.tolist()[1:])))),
            refuse(r"interactions\.parquet", r"\brow 1\b", "item_id")),
        DataCase("unknown file extension", with_files(interactions=("interactions.xlsx", L)),
                 refuse(r"interactions\.xlsx", "format")),
        DataCase("every row bad with --on_bad_rows=skip", with_files(interactions=delimited(
            LOG_HEADER, [(u, "99", t, rt) for u, _, t, rt in logs])),
            refuse(r"interactions\.csv", "no interactions"), ("--on_bad_rows=skip",)),
        DataCase("duplicate user in the users file", with_files(users=("users.csv", delimited(
            ("user_id", "age"), [("1", "20"), ("2", "21"), ("1", "22")]))), at("users.csv", 4, "user_id")),
        DataCase("user absent from the users file", with_files(users=("users.csv", delimited(
            ("user_id", "age"), [(str(u), "20") for u in range(1, NUM_USERS)]))),
            at("interactions.csv", log_row(NUM_USERS, 0), "user_id")),
        DataCase("empty event", with_files(interactions=delimited(
            (*LOG_HEADER, "event"), [(*rec, "" if n == r - 2 else "click") for n, rec in enumerate(logs)])),
            at("interactions.csv", r, "event")),
    ]
    return cases


CLI_SAMPLE = ("baseline CSV", "UTF-8 BOM in the interactions file", "bad rating with --on_bad_rows=skip",
              "exact duplicate rows", "milliseconds in a seconds column", "unclosed quote in the items file",
              "header-only interactions CSV", "non-numeric rating")
"""Data cases also run through the real `python -m tfrec.data describe` (their checks read only counts)."""
