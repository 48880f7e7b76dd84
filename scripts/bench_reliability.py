"""Replays the hardening cases of the reliability review against the real commands and server.

Five classes, every case generated here (files in a temp dir) and judged by
`reliability_cases.judge` (handled / silently_wrong / crash / hang / unclear /
refused):

* data files: hand-made CSV/TSV/JSONL/Parquet tables read through the call
  `python -m tfrec.data describe` makes (flags parsed by its own definer, then
  `prepare` and `summary.describe`), in-process; a sample also through the
  real CLI;
* flag sets: `python -m tfrec.train / tfrec.data / tfrec.export / tfrec.serve`
  with bad flags, or resuming a finished run with changed ones;
* kills: SIGKILL of train / convert / export at seeded random moments, then
  the checks that no partial output looks complete and that a rerun succeeds
  (or is refused, naming what to do);
* requests: the stock `tensorflow_serving` stubs over gRPC and raw HTTP
  against `tfrec.server.Server` serving a real `tfrec.export` (declared
  shapes, dtypes, non-UTF-8, unknown model/signature/version, oversize, 20
  stalled clients, bearer token and TLS, REST bodies, and raw-socket attacks
  on the REST port: request smuggling, slowloris, 200 simultaneous clients;
  the metric series that made-up model and signature names add);
* reload: a client loop while `python -m tfrec.export` writes new versions,
  a version copied in without a rename, a corrupt latest version at restart,
  and that version repaired in place.

Prints one table per class and the totals, writes them to BENCHMARKS.md (the
`bench_reliability` section) and the raw results to
`bench_results/reliability/results.json`.

Example:
    nice -n 10 python scripts/bench_reliability.py
    nice -n 10 python scripts/bench_reliability.py --classes=data,requests --output=
"""

import collections
import json
import logging
import os
import random
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import benchlib  # noqa: E402
import reliability_cases as rc  # noqa: E402
from absl import app, flags  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("data", "flags", "kills", "requests", "reload")
REST_DEADLINE = 5  # seconds a REST request may take to arrive on the requests-class server (slowloris case)
METRICS_PATH = "/monitoring/prometheus/metrics"

FLAGS = flags.FLAGS
flags.DEFINE_list("classes", list(CLASSES), f"Classes of cases to run, of {', '.join(CLASSES)}.")
flags.DEFINE_float("timeout", 120.0, "Seconds a command case may take before it counts as a hang.")
flags.DEFINE_float("request_timeout", 10.0, "Seconds a request case may take before it counts as a hang.")
flags.DEFINE_integer("seed", 0, "Seed of the kill moments.")
flags.DEFINE_string("results_dir", os.path.join(REPO, "bench_results", "reliability"),
                    "Directory of the raw per-case results (results.json).")
flags.DEFINE_string("output", os.path.join(REPO, "BENCHMARKS.md"),
                    "Markdown file to update ('' = print only; only a run of every class updates it).")

TINY_TRAIN = ("--source=synthetic:users=40,items=50", "--encoder=tiny", "--epochs=1", "--eval_ks=10")
TRACEBACK = "Traceback (most recent call last)"


class Recorder:
    """Collects the results of the cases: class, case, expectation, outcome, seconds, message (the work
    directory `work` and any other temp directory written TMP), path taken."""

    def __init__(self, work):
        self.results, self.escaped_work = [], re.escape(work)
        self.temp_paths = re.compile(re.escape(work) + "|" + re.escape(tempfile.gettempdir()) + r"/[^/\s'\"]+")

    def add(self, klass, case, expect, attempt, seconds, via=""):
        outcome = rc.judge(expect, attempt)
        expected = self.temp_paths.sub("TMP", expect.describe().replace(self.escaped_work, "TMP"))
        result = {"class": klass, "case": case, "expected": expected, "outcome": outcome,
                  "seconds": round(seconds, 2), "via": via,
                  "message": self.temp_paths.sub("TMP", " ".join(attempt.message.split()))}
        self.results.append(result)
        print(f"[{klass}] {case}: {outcome} ({seconds:.1f} s) {result['message'][:160]}", flush=True)
        return outcome

    def timed(self, klass, case, expect, run, via=""):
        """Runs `run()` (returning an `Attempt`) within the case timeout and records it."""
        start = time.monotonic()
        attempt = bounded(run, FLAGS.timeout)
        return self.add(klass, case, expect, attempt, time.monotonic() - start, via)


def bounded(run, timeout):
    """`run()` in a daemon thread: its `Attempt`, a hang after `timeout` s, a crash on an unexpected exception."""
    box = {}

    def target():
        try:
            box["attempt"] = run()
        except Exception:  # noqa: BLE001 - any unexpected exception of the code under test is a crash
            box["attempt"] = rc.Attempt(False, traceback.format_exc(limit=-2), crash=True)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    return box.get("attempt") or rc.Attempt(False, f"no answer within {timeout:.0f} s", hang=True)


# ---------------------------------------------------------------- processes

def env():
    return dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")


def start(module, args, log):
    """`python -m module args` in its own process group, output to the file `log`."""
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env=env(), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def kill_group(process, sig=signal.SIGKILL):
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    process.wait()


def error_lines(text, count=4):
    """A command's message: from its last line saying "error" on (else its last `count` lines), TensorFlow/absl
    log lines left out."""
    lines = [line for line in text.splitlines() if line.strip() and not re.match(r"^[IWE]\d{4} |^\d{4}-\d\d-\d\d ", line)]
    errors = [n for n, line in enumerate(lines) if "error" in line.lower()]
    return " | ".join(lines[errors[-1]:] if errors else lines[-count:])[:1000]


def file_size_limit(limit_bytes):
    """A `preexec_fn` setting RLIMIT_FSIZE to `limit_bytes` with SIGXFSZ ignored: a write past it fails with
    EFBIG (as on a full disk, for one file)."""
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return preexec


def command(module, args, timeout=None, preexec_fn=None):
    """Runs `python -m module args`: an `Attempt` (accepted = exit 0) with facts {"returncode", "stdout"}."""
    process = subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env=env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True, preexec_fn=preexec_fn)
    try:
        stdout, stderr = process.communicate(timeout=timeout or FLAGS.timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        return rc.Attempt(False, f"still running after {timeout or FLAGS.timeout:.0f} s", hang=True)
    stdout, stderr = stdout.decode(errors="replace"), stderr.decode(errors="replace")
    crash = process.returncode < 0 or TRACEBACK in stderr
    text = stderr[stderr.index(TRACEBACK):][-600:] if TRACEBACK in stderr else error_lines(stderr or stdout)
    if process.returncode < 0:
        text = f"killed by signal {-process.returncode}; {text}"
    return rc.Attempt(process.returncode == 0, text, {"returncode": process.returncode, "stdout": stdout},
                      crash=crash)


# ---------------------------------------------------------------- data files

def write_files(case, directory):
    os.makedirs(directory, exist_ok=True)
    for file, content in case.files.values():
        path = os.path.join(directory, file)
        if content == rc.FIFO:
            os.mkfifo(path)
        elif content == rc.FOLDER:
            os.makedirs(path)
        elif not os.path.isabs(file):
            with open(path, "wb") as f:
                f.write(content)


def data_in_process(argv):
    """What `python -m tfrec.data describe` does with `argv`, in this process."""
    from tfrec import config_flags, data_tool
    from tfrec.config import ConfigError
    from tfrec.data import DataConfig, DataError, prepare, summary

    values = flags.FlagValues()
    data_tool.define_flags(values)
    try:
        values(["tfrec.data", "describe", *argv])
        config = config_flags.from_flags(DataConfig, values)
        prepared = prepare(config)
        stats = summary.describe(prepared.tables, prepared.split, prepared.examples)
    except (DataError, ConfigError, flags.Error) as error:
        return rc.Attempt(False, f"error: {config_flags.flag_message(error)}")
    facts = {"interactions": stats["interactions"], "items": stats["items"], "skipped": stats["skipped"],
             "tables": prepared.tables}
    return rc.Attempt(True, f"{stats['interactions']} interactions, {stats['items']} items, "
                            f"skipped {stats['skipped']}", facts)


def data_through_cli(argv):
    attempt = command("tfrec.data", ["describe", "--format=json", *argv])
    if attempt.accepted:
        stats = json.loads(attempt.facts["stdout"])
        attempt.facts = {key: stats[key] for key in ("interactions", "items", "skipped")}
        attempt.message = f"{stats['interactions']} interactions, {stats['items']} items, skipped {stats['skipped']}"
    return attempt


def run_data(recorder, work):
    from tfrec import quiet

    quiet.configure("bench_reliability")
    cases = rc.data_cases()
    for number, case in enumerate(cases):
        directory = os.path.join(work, "data", f"{number:03d}")
        write_files(case, directory)
        argv = case.argv(directory)
        recorder.timed("data", case.name, case.expect, lambda: data_in_process(argv), via="in-process")
        if case.name in rc.CLI_SAMPLE:
            recorder.timed("data", case.name, case.expect, lambda: data_through_cli(argv), via="CLI")


# ---------------------------------------------------------------- flag sets

def fresh_copy(run_dir, copy):
    """`copy` made a fresh copy of the run directory `run_dir` (TensorBoard logs aside); returns `copy`."""
    shutil.rmtree(copy, ignore_errors=True)
    return shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("tensorboard"))


def flag_cases(work, run_dir, export_base):
    """(name, module, args, Expect, setup or None) of the flag-set cases."""
    fresh = iter(os.path.join(work, "flag-runs", str(n)) for n in range(1000))
    a_file = os.path.join(work, "a-file")
    nonempty = os.path.join(work, "nonempty")
    unfinished = os.path.join(work, "unfinished-run")
    token_file = os.path.join(work, "token")

    def resumed(*changed):
        copy = next(fresh)
        return "tfrec.train", [*TINY_TRAIN, f"--run_dir={copy}", *changed], lambda: fresh_copy(run_dir, copy)

    def train(*args):
        return "tfrec.train", [*TINY_TRAIN, f"--run_dir={next(fresh)}", *args], None

    refuse = rc.refuse
    cases = [
        ("--history_length=0", *train("--history_length=0"), refuse("history_length")),
        ("--run_dir that is a file", "tfrec.train", [*TINY_TRAIN, f"--run_dir={a_file}"],
         None, refuse(re.escape(a_file), "is a file")),
        ("no --run_dir", "tfrec.train", list(TINY_TRAIN), None, refuse("run_dir")),
        ("--epochs=-1", *train("--epochs=-1"), refuse("epochs")),
        ("--batch_size=-1", *train("--batch_size=-1"), refuse("batch_size")),  # 0 is documented: automatic
        ("--learning_rate=-0.1", *train("--learning_rate=-0.1"), refuse("learning_rate")),
        ("--encoder=nosuch", *train("--encoder=nosuch"), refuse("encoder", "nosuch")),
        ("--eval_ks=100 over a 50-item catalogue", *train("--eval_ks=100"), refuse("eval_ks", "100")),
        ("--split_fractions=0.5,0.5,0.5", *train("--split_fractions=0.5,0.5,0.5"), refuse("split_fractions")),
        ("--task=nosuch", *train("--task=nosuch"), refuse("task", "nosuch")),
        ("--dropout=1.5", *train("--dropout=1.5"), refuse("dropout")),
        ("--split=nosuch", *train("--split=nosuch"), refuse("split", "nosuch")),
        ("--rating_range=5,1", *train("--rating_range=5,1"), refuse("rating_range")),
        ("--source=bogus:x", *train("--source=bogus:x"), refuse("source", "bogus")),
        ("--source=synthetic:users=abc", *train("--source=synthetic:users=abc"), refuse("synthetic", "abc|integer")),
        ("--source naming missing files", *train("--source=table:interactions=/no/such/logs.csv,items=/no/items.csv"),
         refuse("/no/such/logs.csv", "not found")),
        ("an unknown flag", *train("--no_such_flag=1"), refuse("no_such_flag")),
        ("a positional argument", *train("extra"), refuse("extra", "unexpected|argument")),
        ("--flagfile=/no/such.flags", *train("--flagfile=/no/such.flags"), refuse("/no/such.flags")),
        ("resume with a changed --learning_rate", *resumed("--learning_rate=0.5"), refuse("learning_rate", "0.5")),
        ("resume with a changed --batch_size", *resumed("--batch_size=4"), refuse("batch_size", "4")),
        ("resume with a changed --epochs", *resumed("--epochs=3"), refuse("epochs", "3")),
        ("resume on other data (seed)", *resumed("--source=synthetic:users=40,items=50,seed=1"),
         refuse("source|data", "seed=1|fingerprint")),
        ("resume with a grown catalogue", *resumed("--source=synthetic:users=40,items=60"),
         refuse("source|items|catalogue", "60")),
        ("convert into a non-empty --output_dir", "tfrec.data",
         ["convert", "--source=synthetic:users=20,items=30", f"--output_dir={nonempty}"], None,
         refuse(re.escape(nonempty), "not empty")),
        ("convert --overwrite over foreign files", "tfrec.data",
         ["convert", "--source=synthetic:users=20,items=30", f"--output_dir={nonempty}", "--overwrite"], None,
         refuse(re.escape(nonempty), "notes.txt")),
        ("convert --output_dir that is a file", "tfrec.data",
         ["convert", "--source=synthetic:users=20,items=30", f"--output_dir={a_file}"], None,
         refuse(re.escape(a_file), "is a file")),
        ("export of a missing run", "tfrec.export", ["--run_dir=/no/such/run", f"--export_base={export_base}",
                                                     "--model_name=flags"], None, refuse("/no/such/run")),
        ("export of an unfinished run", "tfrec.export",
         [f"--run_dir={unfinished}", f"--export_base={export_base}", "--model_name=flags"],
         lambda: os.remove(os.path.join(fresh_copy(run_dir, unfinished), "metrics.json")),
         refuse(re.escape(unfinished), "metrics.json")),
        ("export over an existing --version", "tfrec.export",
         [f"--run_dir={run_dir}", f"--export_base={export_base}", "--model_name=m", "--version=1"], None,
         refuse("1", "exists")),
        ("export --model_name with a slash", "tfrec.export",
         [f"--run_dir={run_dir}", f"--export_base={export_base}", "--model_name=a/b"], None, refuse("model_name", "a/b")),
        ("serve --allow_config_reload without --model_root", "tfrec.serve",
         ["--server=embedded", "--model_name=m", f"--model_base_path={export_base}/m", "--allow_config_reload"],
         None, refuse("--allow_config_reload needs --model_root")),
        ("serve --ssl_cert without --ssl_key", "tfrec.serve",
         ["--server=embedded", "--model_name=m", f"--model_base_path={export_base}/m", "--ssl_cert=x.crt"],
         None, refuse("ssl_key|private key")),
        ("serve --auth_token_file missing", "tfrec.serve",
         ["--server=embedded", "--model_name=m", f"--model_base_path={export_base}/m",
          "--auth_token_file=/no/such/token"], None, refuse("/no/such/token")),
        ("serve --auth_token_file with non-ASCII bytes", "tfrec.serve",
         ["--server=embedded", "--model_name=m", f"--model_base_path={export_base}/m",
          f"--auth_token_file={token_file}"], lambda: write_bytes(token_file, b"tok\xff\xfeen\n"),
         refuse("auth_token_file", "ASCII")),
        ("serve --auth_token_file empty", "tfrec.serve",
         ["--server=embedded", "--model_name=m", f"--model_base_path={export_base}/m",
          f"--auth_token_file={token_file}"], lambda: write_bytes(token_file, b""),
         refuse("auth_token_file", "expected a token|empty")),
        ("--delimiter=ab", "tfrec.data", ["describe", "--source=synthetic:users=20,items=30", "--delimiter=ab"], None,
         refuse("delimiter", "one character")),
        ("--delimiter a newline", "tfrec.data", ["describe", "--source=synthetic:users=20,items=30", "--delimiter=\n"],
         None, refuse("delimiter", "one character")),
        ("serve --model_config_file with --model_name", "tfrec.serve",
         ["--model_config_file=serving/models.config", "--model_name=m"], None, refuse("not both")),
        ("serve --port=-1", "tfrec.serve", ["--server=embedded", "--model_name=m",
                                           f"--model_base_path={export_base}/m", "--port=-1"], None, refuse("port")),
    ]
    cases += version_flag_cases(work, run_dir, export_base, train)
    cases += saved_config_cases(work, run_dir, export_base)
    return cases


def saved_config_cases(work, run_dir, export_base):
    """Export cases of run directories whose config.json an operator edited or an older tfrec wrote."""
    def edited(name, section, change):
        copy = os.path.join(work, "edited-runs", name)

        def setup():
            config_file = os.path.join(fresh_copy(run_dir, copy), "config.json")
            with open(config_file) as f:
                saved = json.load(f)
            saved[section] = change(saved[section])
            with open(config_file, "w") as f:
                json.dump(saved, f)
        return "tfrec.export", [f"--run_dir={copy}", f"--export_base={export_base}", "--model_name=edited",
                                "--allow_below_baseline"], setup

    def exported(facts):
        return None if "exported" in facts["stdout"] else f"expected an export: {facts['stdout'][-200:]}"

    refuse = rc.refuse
    return [
        ("export of a run whose config.json model_config is a list", *edited("list", "model_config", lambda c: [c]),
         refuse("model_config is list")),
        ("export of a run whose config.json train_config is null", *edited("null", "train_config", lambda c: None),
         refuse("train_config is NoneType")),
        ("export of a run trained with the removed mixture-of-experts adaptor",
         *edited("moe", "model_config", lambda c: {**c, "text_adaptor": "moe", "text_experts": 8}),
         refuse("text_adaptor='moe'", "retrain")),
        ("export of a run saved with the removed fields at their old defaults",
         *edited("stale", "model_config", lambda c: {**c, "text_adaptor": "linear", "text_experts": 8}),
         rc.Expect(check=exported, says="exported, the stale fields dropped")),
    ]


def version_flag_cases(work, run_dir, export_base, train):
    """The flag cases of training that cannot go on and of export bases holding odd directories."""
    odd_base = os.path.join(work, "odd-base")

    def odd_directories():  # an intact version 1, an empty 2, and names of other scripts' digits
        shutil.rmtree(odd_base, ignore_errors=True)
        shutil.copytree(os.path.join(export_base, "m", "1"), os.path.join(odd_base, "m", "1"))
        for name in ("2", "\u0667", "\u00b2"):
            os.makedirs(os.path.join(odd_base, "m", name))

    def wrote_version_3(facts):
        return None if "(version 3)" in facts["stdout"] else f"expected version 3: {facts['stdout'][-200:]}"

    return [
        ("--learning_rate=1e8 --clipnorm=0 (the loss diverges)", *train("--learning_rate=1e8", "--clipnorm=0"),
         rc.refuse("diverged", "learning_rate")),
        ("export into a read-only --export_base", "tfrec.export",
         [f"--run_dir={run_dir}", "--export_base=/sys/tfrec-exports", "--model_name=m"], None,
         rc.refuse("/sys", "cannot write")),
        ("export beside an empty version and Unicode-digit directories", "tfrec.export",
         [f"--run_dir={run_dir}", f"--export_base={odd_base}", "--model_name=m"], odd_directories,
         rc.Expect(check=wrote_version_3, says="version 3 written (2 is empty, \u0667 and \u00b2 are no versions)")),
    ]


def write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


FLAG_CLI_SAMPLE = ("--history_length=0", "a positional argument", "resume with a changed --learning_rate")
"""`tfrec.train` flag cases also run through the real CLI (the others run in-process, see `train_in_process`)."""


def train_in_process(args):
    """What `python -m tfrec.train args` does, in this process: its flags parsed by its own definer, then
    `train.train`; a refusal is its `ConfigError` or flag error."""
    from tfrec import train
    from tfrec.config import ConfigError

    values = flags.FlagValues()
    train.define_flags(values)
    try:
        values(["tfrec.train", *args])
        metrics = train.train(values)
    except (ConfigError, flags.Error) as error:
        return rc.Attempt(False, f"tfrec.train: error: {error}")
    return rc.Attempt(True, f"trained: {json.dumps({k: metrics[k] for k in ('epochs', 'batch_size') if k in metrics})}")


def run_flags(recorder, work, run_dir, export_base):
    with open(os.path.join(work, "a-file"), "w") as f:
        f.write("not a directory\n")
    os.makedirs(os.path.join(work, "nonempty"), exist_ok=True)
    with open(os.path.join(work, "nonempty", "notes.txt"), "w") as f:
        f.write("keep me\n")
    for name, module, args, setup, expect in flag_cases(work, run_dir, export_base):
        paths = []
        if module == "tfrec.train" and name != "a positional argument":  # train.train does not see argv
            paths.append(("tfrec.train in-process", lambda: train_in_process(args)))
        if module != "tfrec.train" or name in FLAG_CLI_SAMPLE:
            paths.append((module, lambda: command(module, args)))
        for via, run in paths:
            if setup:
                setup()
            recorder.timed("flags", name, expect, run, via=via)
    run_storage_cases(recorder, work, run_dir)


def read_only_directory(work):
    """A directory this process cannot write in: a 0o555 one, or for root (who writes there anyway) /sys."""
    directory = os.path.join(work, "read-only")
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o555)
    return "/sys" if os.geteuid() == 0 else directory


def checked_after(run, problem):
    """`run()`'s `Attempt`; when it was refused but `problem()` (what its output left wrong) is not None, an
    accepted one carrying that problem (so it is judged silently wrong)."""
    attempt = run()
    left = problem()
    if not attempt.accepted and not attempt.crash and left:
        return rc.Attempt(True, f"{left}; {attempt.message}", {"problem": left})
    return attempt


def export_race(run_dir, base):
    """Two `tfrec.export` of `run_dir` into `base` started at once: an `Attempt` (accepted = both ended) whose
    facts say what is wrong: an [Errno 39], a traceback, both refused, or a partial version."""
    processes = [subprocess.Popen([sys.executable, "-m", "tfrec.export", f"--run_dir={run_dir}",
                                   f"--export_base={base}", "--model_name=m"], cwd=REPO, env=env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
                 for _ in range(2)]
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=FLAGS.timeout * 2)[0].decode(errors="replace"))
        except subprocess.TimeoutExpired:
            kill_group(process)
            return rc.Attempt(False, "an export still running", hang=True)
    codes = [process.returncode for process in processes]
    versions = sorted(name for name in os.listdir(os.path.join(base, "m")) if name.isdigit())
    ends = [error_lines(output, 1)[:150] for output in outputs]
    problem = ("[Errno 39]" if any("Errno 39" in output for output in outputs) else
               "a traceback" if any(TRACEBACK in output for output in outputs) else
               "neither export succeeded" if all(codes) else
               "the refused export does not say why" if any(codes) and not any(
                   "another export" in end for end, code in zip(ends, codes) if code) else
               complete_versions(os.path.join(base, "m")))
    return rc.Attempt(True, f"exit codes {codes}, versions {versions}; {' / '.join(ends)}", {"problem": problem})


def stale_stage(run_dir, base):
    """Version 1 and the `.tmp-` directory of a dead export (an hour old), then an export: an `Attempt` whose
    facts say what is wrong unless the directory is gone and version 2 written."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    stage = os.path.join(base, "m", f".tmp-2-{socket.gethostname()}-{dead.pid}-abcd1234")
    os.makedirs(os.path.join(stage, "variables"))
    write_bytes(os.path.join(stage, "saved_model.pb"), b"half written")
    os.utime(stage, (time.time() - 3600,) * 2)
    attempt = command("tfrec.export", [f"--run_dir={run_dir}", f"--export_base={base}", "--model_name=m"])
    if attempt.accepted:
        left = sorted(os.listdir(os.path.join(base, "m")))
        attempt.facts = {"problem": None if left == ["1", "2"] else f"left {left}"}
        attempt.message = f"versions after the export: {left}; {attempt.message[-200:]}"
    return attempt


def run_storage_cases(recorder, work, run_dir):
    """Training and export under a file size limit or into a read-only directory, two exports racing, a stale
    temporary directory of a dead export."""
    storage = os.path.join(work, "storage")
    train_run, export_base = os.path.join(storage, "run"), os.path.join(storage, "exports")
    no_partial = "no partial output looks complete"
    recorder.timed("flags", "train under a 200 kB file size limit (EFBIG)",
                   rc.Expect(refuse=("file size limit|File too large",), check=lambda facts: facts["problem"],
                             says=no_partial),
                   lambda: checked_after(lambda: command("tfrec.train", [*TINY_TRAIN, f"--run_dir={train_run}"],
                                                         preexec_fn=file_size_limit(200_000)),
                                         lambda: complete_run(train_run)), via="tfrec.train")
    recorder.timed("flags", "export under a 1 MB file size limit (EFBIG)",
                   rc.Expect(refuse=("File too large|file size limit",), check=lambda facts: facts["problem"],
                             says=no_partial),
                   lambda: checked_after(lambda: command("tfrec.export", [f"--run_dir={run_dir}",
                                                                          f"--export_base={export_base}",
                                                                          "--model_name=m"],
                                                         preexec_fn=file_size_limit(1_000_000)),
                                         lambda: complete_versions(os.path.join(export_base, "m")) or (
                                             "a version written" if layout_versions(export_base) else None)),
                   via="tfrec.export")
    read_only = read_only_directory(work)
    recorder.timed("flags", "train into a read-only --run_dir", rc.refuse(re.escape(read_only), "cannot write"),
                   lambda: command("tfrec.train", [*TINY_TRAIN, f"--run_dir={read_only}/run"]), via="tfrec.train")
    race_base = os.path.join(storage, "race")
    recorder.timed("flags", "two exports racing for one version",
                   rc.Expect(check=lambda facts: facts["problem"], says="one version each, or one refused saying so"),
                   lambda: export_race(run_dir, race_base), via="tfrec.export")
    stale_base = os.path.join(storage, "stale")
    os.makedirs(os.path.join(stale_base, "m"))
    shutil.copytree(os.path.join(work, "exports", "m", "1"), os.path.join(stale_base, "m", "1"))
    recorder.timed("flags", "stale .tmp- directory of a dead export", rc.Expect(
        check=lambda facts: facts["problem"], says="removed by the next export, version 2 written"),
        lambda: stale_stage(run_dir, stale_base), via="tfrec.export")


def layout_versions(export_base):
    """The version directories of model `m` under `export_base`."""
    model_dir = os.path.join(export_base, "m")
    return [name for name in os.listdir(model_dir) if name.isdigit()] if os.path.isdir(model_dir) else []


# ---------------------------------------------------------------- kills

def complete_run(directory):
    """What a run directory that looks finished (has metrics.json) lacks, or None."""
    if not os.path.exists(os.path.join(directory, "metrics.json")):
        return None
    missing = [f for f in ("config.json", "vocabulary.json", "items.jsonl", "model.weights.h5")
               if not os.path.exists(os.path.join(directory, f))]
    return f"metrics.json written but {missing} missing" if missing else None


def complete_conversion(directory):
    """What a conversion directory that has metadata.json lacks, or None (stray files outside it count too)."""
    if not os.path.isdir(directory) or not os.listdir(directory):
        return None
    metadata_path = os.path.join(directory, "metadata.json")
    if not os.path.exists(metadata_path):
        return f"{sorted(os.listdir(directory))[:4]} written without metadata.json"
    with open(metadata_path) as f:
        metadata = json.load(f)
    missing = [name for info in metadata["splits"].values() for name in info["files"]
               if not os.path.exists(os.path.join(directory, name))]
    return f"metadata.json names missing shards {missing[:3]}" if missing else None


VERSION_FILES = ("saved_model.pb", "fingerprint.pb", "variables/variables.index", "assets/item_ids.txt")


def complete_versions(model_dir):
    """What the numbered version directories of `model_dir` lack, or None."""
    if not os.path.isdir(model_dir):
        return None
    for name in sorted(os.listdir(model_dir)):
        if name.isdigit():
            missing = [f for f in VERSION_FILES if not os.path.exists(os.path.join(model_dir, name, f))]
            if missing:
                return f"version {name} lacks {missing}"
    return None


def kill_case(recorder, name, module, args, delay, partial, rerun_check, log):
    """SIGKILLs `module args` after `delay` s, checks the output with `partial`, reruns the same command and
    checks its result with `rerun_check` (facts -> problem or None)."""
    start_time = time.monotonic()
    process = start(module, args, log)
    try:
        process.wait(timeout=delay)
        state = f"finished (exit {process.returncode}) before the kill at {delay:.1f} s"
    except subprocess.TimeoutExpired:
        kill_group(process)
        state = f"killed at {delay:.1f} s"
    problem = partial()
    if problem:
        attempt = rc.Attempt(True, f"{state}: {problem}", {"problem": problem})
    else:
        attempt = command(module, args, timeout=FLAGS.timeout * 2)
        attempt.message = f"{state}; rerun: {attempt.message[-300:]}"
        if attempt.accepted:
            attempt.facts = {"problem": rerun_check()}
    expect = rc.Expect(refuse=(r"rerun:.*(--overwrite|run_dir|already|exists)",),
                       check=lambda facts: facts["problem"], says="no partial output looks complete; rerun ok")
    recorder.add("kills", name, expect, attempt, time.monotonic() - start_time, via=module)


def run_kills(recorder, work, run_dir):
    rng = random.Random(FLAGS.seed)
    logs = os.path.join(work, "kill-logs")
    os.makedirs(logs, exist_ok=True)
    for n, band in enumerate([(1, 5), (8, 16), (18, 30), (30, 42)]):
        directory = os.path.join(work, "kill-train", str(n))
        delay = rng.uniform(*band)
        kill_case(recorder, f"train killed at {delay:.1f} s", "tfrec.train",
                  [*TINY_TRAIN, "--checkpoint_every_steps=1", f"--run_dir={directory}"], delay,
                  lambda: complete_run(directory),
                  lambda: complete_run(directory) or (None if os.path.exists(os.path.join(directory, "metrics.json"))
                                                      else "the rerun exited 0 without metrics.json"),
                  os.path.join(logs, f"train-{n}.log"))
    for n, band in enumerate([(2, 6), (6, 12), (12, 20)]):
        directory = os.path.join(work, "kill-convert", str(n), "out")
        delay = rng.uniform(*band)
        args = ["convert", "--source=synthetic:users=3000,items=400,per_user=30", f"--output_dir={directory}",
                "--num_shards=4", "--chunk_size=4096"]
        kill_case(recorder, f"convert killed at {delay:.1f} s", "tfrec.data", args, delay,
                  lambda: complete_conversion(directory),
                  lambda: complete_conversion(directory) or (None if os.path.exists(
                      os.path.join(directory, "metadata.json")) else "the rerun exited 0 without metadata.json"),
                  os.path.join(logs, f"convert-{n}.log"))
    for n, band in enumerate([(2, 8), (8, 18), (18, 28)]):
        base = os.path.join(work, "kill-export", str(n))
        delay = rng.uniform(*band)
        model_dir = os.path.join(base, "k")
        kill_case(recorder, f"export killed at {delay:.1f} s", "tfrec.export",
                  [f"--run_dir={run_dir}", f"--export_base={base}", "--model_name=k"], delay,
                  lambda: complete_versions(model_dir),
                  lambda: complete_versions(model_dir) or (None if any(
                      v.isdigit() for v in os.listdir(model_dir)) else "the rerun exited 0 without a version"),
                  os.path.join(logs, f"export-{n}.log"))


# ---------------------------------------------------------------- requests

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(name, base, **options):
    """A started in-process `tfrec.server.Server` of model `name` at `base` (gRPC and REST on free ports)."""
    import tensorflow_text  # noqa: F401 - the exports tokenise in the graph
    from tfrec.server import config as config_lib
    from tfrec.server.server import Server, ServerOptions

    options = dict(dict(port=free_port(), rest_api_port=free_port(), poll_wait_seconds=0.5), **options)
    server = Server(ServerOptions(model_config=config_lib.single_model_config(name, base), **options))
    server.start()
    return server


def wait_serving(target, name, timeout=120, credentials=None, metadata=None):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with (grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status == 1:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.3)
    raise RuntimeError(f"{name} not SERVING at {target} after {timeout} s")


def grpc_attempt(call, request, **kwargs):
    """`call(request)` as an `Attempt`: the reply as facts; INTERNAL/UNKNOWN a crash, DEADLINE_EXCEEDED a hang."""
    import grpc

    try:
        reply = call(request, timeout=FLAGS.request_timeout, **kwargs)
    except grpc.RpcError as error:
        code = error.code()
        return rc.Attempt(False, f"{code.name}: {error.details()}",
                          crash=code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN),
                          hang=code == grpc.StatusCode.DEADLINE_EXCEEDED)
    return rc.Attempt(True, str(reply).replace("\n", " ")[:200], reply)


def rest_attempt(port, method, path, body=b"", headers=None, context=None):
    """One HTTP request as an `Attempt` (accepted = 200; HTTP 500 or a dropped connection a crash)."""
    import http.client

    connection = (http.client.HTTPSConnection("localhost", port, timeout=FLAGS.request_timeout, context=context)
                  if context else http.client.HTTPConnection("127.0.0.1", port, timeout=FLAGS.request_timeout))
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        payload = response.read()
    except (socket.timeout, TimeoutError):
        return rc.Attempt(False, f"no answer within {FLAGS.request_timeout:.0f} s", hang=True)
    except (ConnectionError, http.client.HTTPException, ssl.SSLError) as error:
        return rc.Attempt(False, f"connection failed: {error!r}", crash=True)
    finally:
        connection.close()
    text = payload.decode(errors="replace")
    facts = json.loads(text) if response.status == 200 else None
    return rc.Attempt(response.status == 200, f"HTTP {response.status}: {text[:300]}", facts,
                      crash=response.status >= 500 and response.status not in (501, 503))


class Requests:
    """The request cases against a running server of the tiny export `m` (item ids `catalogue`)."""

    def __init__(self, server, catalogue):
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.server, self.catalogue = server, catalogue
        self.target = f"127.0.0.1:{server.port}"
        self.channel = grpc.insecure_channel(self.target, options=[("grpc.max_send_message_length", 64 << 20),
                                                                   ("grpc.max_receive_message_length", 64 << 20)])
        self.predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def request(self, model="m", signature="", version=None, label=None, output_filter=(), **inputs):
        """A PredictRequest; `inputs` name -> TensorProto (default: a history of two known items and k=3)."""
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest(output_filter=list(output_filter))
        request.model_spec.name = model
        request.model_spec.signature_name = signature
        if version is not None:
            request.model_spec.version.value = version
        if label is not None:
            request.model_spec.version_label = label
        defaults = {"history": tf.make_tensor_proto([self.catalogue[:2]], dtype=tf.string),
                    "k": tf.make_tensor_proto(3, dtype=tf.int32)}
        for name, proto in {**defaults, **inputs}.items():
            if proto is not None:
                request.inputs[name].CopyFrom(proto)
        return request

    def recommends(self, batch, k, history=None):
        """A check: a reply of `batch` rows of `k` catalogue items, none of `history` (default: the default
        request's, for one row), scores not increasing."""
        history = set(self.catalogue[:2] if history is None and batch == 1 else history or ())
        import tensorflow as tf

        def check(reply):
            ids = tf.make_ndarray(reply.outputs["item_ids"])
            scores = tf.make_ndarray(reply.outputs["scores"])
            if ids.shape != (batch, k):
                return f"item_ids of shape {ids.shape}, expected {(batch, k)}"
            answered = {i.decode() for i in ids.ravel()}
            if answered - set(self.catalogue):
                return f"answered ids outside the catalogue {sorted(answered - set(self.catalogue))[:3]}"
            if answered & history:
                return f"recommended history items {sorted(answered & history)}"
            return None if (scores[:, :-1] >= scores[:, 1:]).all() else "scores not sorted"

        return check

    def cases(self):
        """(name, call, request, Expect) of the gRPC request cases."""
        import tensorflow as tf
        from google.protobuf import text_format
        from tensorflow.core.framework import tensor_pb2
        from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                             model_management_pb2)
        from tensorflow_serving.config import model_server_config_pb2

        def crafted(name, dims, dtype=None, **values):
            proto = tensor_pb2.TensorProto(dtype=(dtype or (tf.int32 if name == "k" else tf.string)).as_datatype_enum)
            for size in dims:
                proto.tensor_shape.dim.add(size=size)
            for field, content in values.items():
                if field == "tensor_content":
                    proto.tensor_content = content
                else:
                    getattr(proto, field).extend(content)
            return {name: proto}

        def strings(value):
            return {"history": tf.make_tensor_proto(value, dtype=tf.string)}

        known = self.catalogue
        num = len(known)
        per_mib = (1 << 20) // (len(known[0]) + 2)  # ids per MiB of string_val
        invalid, not_found = "INVALID_ARGUMENT", "NOT_FOUND"
        refuse, ok = rc.refuse, rc.Expect
        predict, metadata, status = self.predict.Predict, self.predict.GetModelMetadata, self.models.GetModelStatus
        req = self.request
        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = "m"
        unknown_status = get_model_status_pb2.GetModelStatusRequest()
        unknown_status.model_spec.name = "nope"
        metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        metadata_request.model_spec.name = "m"
        unknown_metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        unknown_metadata.model_spec.name = "nope"
        reload_config = text_format.Parse(
            'model_config_list { config { name: "m" base_path: "/tmp" model_platform: "tensorflow" } }',
            model_server_config_pb2.ModelServerConfig())
        return [
            ("recommend k=3", predict, req(), ok(check=self.recommends(1, 3), says="3 catalogue items, sorted")),
            ("recommend a batch of 4", predict, req(**strings([known[i:i + 3] for i in range(4)])),
             ok(check=self.recommends(4, 3), says="4 rows of 3")),
            ("recommend every item but the history", predict, req(k=tf.make_tensor_proto(num - 2, dtype=tf.int32)),
             ok(check=self.recommends(1, num - 2), says=f"{num - 2} items")),
            ("k = catalogue size with 2 history items", predict, req(k=tf.make_tensor_proto(num, dtype=tf.int32)),
             refuse(invalid, "k", "catalogue")),
            ("recommend version 1", predict, req(version=1), ok(check=self.recommends(1, 3), says="3 items")),
            ("embed_items", predict, req(signature="embed_items", history=None, k=None,
                                         text=tf.make_tensor_proto(["a space movie", "romance"])),
             ok(check=lambda r: None if list(tf.make_ndarray(r.outputs["embeddings"]).shape)[0] == 2
                else "embeddings not one row per text", says="2 rows")),
            ("GetModelMetadata", metadata, metadata_request,
             ok(check=lambda r: None if "serving_default" in str(r.metadata["signature_def"].value)
                else "no serving_default", says="lists serving_default")),
            ("GetModelStatus", status, status_request, ok(check=lambda r: None if r.model_version_status[0].state == 30
                                                          else "not AVAILABLE", says="AVAILABLE")),
            ("unknown model", predict, req(model="nope"), refuse(not_found, "nope")),
            ("unknown version", predict, req(version=7), refuse(not_found, "version 7")),
            ("unknown version label", predict, req(label="gold"), refuse(not_found, "gold")),
            ("unknown signature", predict, req(signature="classify_all"), refuse(not_found, "classify_all")),
            ("empty model name", predict, req(model=""), refuse("INVALID_ARGUMENT|NOT_FOUND", "model|name")),
            ("history as int32", predict, req(history=tf.make_tensor_proto([[1, 2]], dtype=tf.int32)),
             refuse(invalid, "history", "int32|dtype")),
            ("history of rank 1", predict, req(**strings(known[:2])), refuse(invalid, "history", "rank")),
            ("history of rank 3", predict, req(**strings([[known[:2]]])), refuse(invalid, "history", "rank")),
            ("k as a matrix", predict, req(k=tf.make_tensor_proto([[3]], dtype=tf.int32)), refuse(invalid, "'k'", "rank")),
            ("k as float", predict, req(k=tf.make_tensor_proto(3.0, dtype=tf.float32)), refuse(invalid, "'k'", "float")),
            ("k as int64", predict, req(k=tf.make_tensor_proto(3, dtype=tf.int64)), refuse(invalid, "'k'", "int64")),
            ("k as string", predict, req(k=tf.make_tensor_proto("3", dtype=tf.string)),
             refuse(invalid, "'k'", "string")),
            ("missing input k", predict, req(k=None), refuse(invalid, "'k'")),
            ("unknown input", predict, req(user=tf.make_tensor_proto(["u1"])), refuse(invalid, "user")),
            ("empty batch", predict, req(**strings(tf.zeros((0, 2), tf.string).numpy())),
             refuse(invalid, "history", "empty")),
            ("k larger than the catalogue", predict, req(k=tf.make_tensor_proto(num + 50, dtype=tf.int32)),
             refuse(invalid, "k", "catalogue|larger|at most")),
            ("k=0", predict, req(k=tf.make_tensor_proto(0, dtype=tf.int32)), refuse(invalid, "k")),
            ("k=-1", predict, req(k=tf.make_tensor_proto(-1, dtype=tf.int32)), refuse(invalid, "k")),
            ("unknown item id (skipped, reported)", predict, req(**strings([[known[0], "no-such-item"]])),
             ok(check=self.recommends(1, 3), says="3 items from the known rest")),
            ("oversized message (5 MiB)", predict, req(**strings([[known[0]] * per_mib * 5])),
             refuse("RESOURCE_EXHAUSTED", "history|max_message|larger")),
            ("message over the transport limit (12 MiB)", predict, req(**strings([[known[0]] * per_mib * 12])),
             refuse("RESOURCE_EXHAUSTED")),
            ("unknown output filter", predict, req(output_filter=["logits"]), refuse(invalid, "logits")),
            ("80-byte k declaring [20000, 20000]", predict, req(**crafted("k", [20000, 20000], int_val=[3])),
             refuse(invalid, "'k'")),
            ("history declaring [1, 1000000]", predict, req(**crafted("history", [1, 1_000_000],
                                                                      string_val=[known[0].encode()])),
             refuse(invalid, "history", "1000000")),
            ("history declaring 20M elements", predict, req(**crafted("history", [20000, 1000],
                                                                      string_val=[known[0].encode()])),
             refuse(invalid, "history")),
            ("negative dimension", predict, req(**crafted("history", [1, -2], string_val=[known[0].encode()])),
             refuse(invalid, "history", "negative")),
            ("string tensor carrying int_val", predict,
             req(**crafted("history", [1, 1], string_val=[known[0].encode()], int_val=[7])),
             refuse(invalid, "history", "int_val")),
            ("int32 k with 3 bytes of tensor_content", predict, req(**crafted("k", [], tensor_content=b"\x01\x02\x03")),
             refuse(invalid, "'k'")),
            ("non-UTF-8 item id", predict, req(**crafted("history", [1, 1], string_val=[b"\xff\xfeitem"])),
             refuse(invalid, "history", "UTF-8")),
            ("history of width 0", predict, req(**crafted("history", [1, 0])), refuse(invalid, "history")),
            ("history padded with empty ids", predict, req(**strings([["", "", known[0]]])),
             ok(check=self.recommends(1, 3, known[:1]), says="3 items (\"\" is padding)")),
            ("Classify", self.predict.Classify, classification_pb2.ClassificationRequest(), refuse("UNIMPLEMENTED")),
            ("GetModelStatus of an unknown model", status, unknown_status, refuse(not_found, "nope")),
            ("GetModelMetadata of an unknown model", metadata, unknown_metadata, refuse(not_found, "nope")),
            ("reload config without --allow_config_reload", self.models.HandleReloadConfigRequest,
             model_management_pb2.ReloadConfigRequest(config=reload_config),
             refuse("PERMISSION_DENIED", "allow_config_reload")),
            ("GetModelMetadata of bytes that are no protobuf",
             self.channel.unary_unary("/tensorflow.serving.PredictionService/GetModelMetadata"),
             b"\xff\xff\xff\xff not a protobuf", refuse("INVALID_ARGUMENT", "not a valid request message")),
        ]

    def rest_cases(self):
        """(name, method, path, body, headers, Expect) of the REST cases."""
        refuse = rc.refuse
        body = json.dumps({"instances": [{"history": self.catalogue[:2]}], "signature_name": "serving_default"})
        columnar = json.dumps({"inputs": {"history": [self.catalogue[:2]], "k": 3}})
        predictions = rc.Expect(check=lambda facts: None if len(facts.get("predictions", facts.get("outputs", []))) else
                                "no predictions", says="predictions")
        return [
            ("REST model status", "GET", "/v1/models/m", b"", {},
             rc.Expect(check=lambda f: None if f["model_version_status"][0]["state"] == "AVAILABLE" else "not AVAILABLE",
                       says="AVAILABLE")),
            ("REST columnar predict", "POST", "/v1/models/m:predict", columnar.encode(), {}, predictions),
            ("REST row predict without k", "POST", "/v1/models/m:predict", body.encode(), {},
             refuse("HTTP 400", "'k'|k")),
            ("REST invalid JSON", "POST", "/v1/models/m:predict", b"{not json", {}, refuse("HTTP 400", "JSON")),
            ("REST body a JSON array", "POST", "/v1/models/m:predict", b"[1, 2]", {},
             refuse("HTTP 400", "object|instances|inputs")),
            ("REST history of numbers", "POST", "/v1/models/m:predict",
             json.dumps({"inputs": {"history": [[1, 2]], "k": 3}}).encode(), {}, refuse("HTTP 400", "history")),
            ("REST unknown model", "POST", "/v1/models/nope:predict", columnar.encode(), {}, refuse("HTTP 404", "nope")),
            ("REST unknown route", "GET", "/v1/nothing/here", b"", {}, refuse("HTTP 404")),
            ("REST GET on :predict", "GET", "/v1/models/m:predict", b"", {}, refuse("HTTP 405")),
            ("REST non-UTF-8 body", "POST", "/v1/models/m:predict", b'{"inputs": "\xff\xfe"}', {},
             refuse("HTTP 400", "UTF-8|JSON")),
            ("REST bad b64", "POST", "/v1/models/m:predict",
             json.dumps({"inputs": {"history": [[{"b64": "!!!"}]], "k": 3}}).encode(), {},
             refuse("HTTP 400", "b64|base64")),
            ("REST Content-Length of 1 GB", "POST", "/v1/models/m:predict", b"{}",
             {"Content-Length": str(1 << 30)}, refuse("HTTP 413")),
            ("REST body over max_message_bytes", "POST", "/v1/models/m:predict",
             json.dumps({"inputs": {"history": [[self.catalogue[0]] * 600_000], "k": 3}}).encode(), {},
             refuse("HTTP 413")),
            ("REST declared-shape bomb (k as a huge nested list)", "POST", "/v1/models/m:predict",
             json.dumps({"inputs": {"history": [self.catalogue[:2]], "k": [[3] * 1000] * 100}}).encode(), {},
             refuse("HTTP 400", "'k'|k")),
            ("REST JSON nested 2,000 deep", "POST", "/v1/models/m:predict",
             b'{"inputs": {"history": ' + b"[" * 2000 + b"]" * 2000 + b', "k": 3}}', {}, refuse("HTTP 400", "nested")),
            ("REST lone surrogate in an id", "POST", "/v1/models/m:predict",
             b'{"inputs": {"history": [["\\ud800"]], "k": 3}}', {}, refuse("HTTP 400", "'history'", "surrogate")),
            ("REST 100,000-digit k", "POST", "/v1/models/m:predict",
             b'{"inputs": {"history": [["x"]], "k": ' + b"9" * 100_000 + b"}}", {},
             refuse("HTTP 400", "'k'", "100000-digit")),
            ("REST 1M empty history ids", "POST", "/v1/models/m:predict",
             b'{"inputs": {"history": [[' + b",".join([b'""'] * 1_000_000) + b']], "k": 3}}', {},
             refuse("HTTP 400", "'history'", "at most")),
        ]


def peak_rss_growth(run):
    """`run()`'s `Attempt`, its facts {"reply", "growth"}: the growth of this process's peak RSS (the in-process
    server's, VmHWM reset through /proc/self/clear_refs) over its RSS before, in bytes."""
    def status(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) << 10 for line in f if line.startswith(field + ":"))

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status("VmRSS")
    attempt = run()
    growth = status("VmHWM") - before
    attempt.facts = {"reply": attempt.facts, "growth": growth}
    attempt.message = f"peak RSS +{growth / 1e6:.0f} MB; {attempt.message}"
    return attempt


def under_1_gb(check=None):
    """A check of `peak_rss_growth` facts: the reply passes `check` (if any) and the growth is under 1 GB."""
    def checked(facts):
        if facts["growth"] >= 1 << 30:
            return f"peak RSS grew {facts['growth'] / 1e9:.1f} GB"
        return check(facts["reply"]) if check else None
    return checked


def large_input_cases(recorder, requests):
    """Histories of thousands of ids for recommend and explain, hundreds of thousands of texts for embed_items
    (each within the message limit), and k=2**31 through the client library."""
    import tensorflow as tf
    from tfrec.client import RecommenderClient
    from tfrec.serving_errors import ServingError

    known = requests.catalogue
    window = known[:10]
    for length in (8_000, 12_000):
        history = tf.make_tensor_proto([[window[i % 10] for i in range(length)]], dtype=tf.string)
        recorder.timed("requests", f"recommend a history of {length:,} ids",
                       rc.Expect(check=under_1_gb(requests.recommends(1, 3, window)),
                                 says="3 items (the history cut to the model's window), peak RSS +<1 GB"),
                       lambda: peak_rss_growth(lambda: grpc_attempt(requests.predict.Predict,
                                                                    requests.request(history=history))), via="gRPC")

    def influence_of(length):
        def check(reply):
            shape = list(tf.make_ndarray(reply.outputs["influence"]).shape)
            return None if shape == [1, 3, length] else f"influence of shape {shape}"
        return check

    per_mib = (1 << 20) // (len(known[0]) + 2)
    for length in (256, 600, per_mib * 3):  # 256: the longest history influence.MAX_EXPLAIN_COST allows
        history = tf.make_tensor_proto([[window[i % 10] for i in range(length)]], dtype=tf.string)
        candidates = tf.make_tensor_proto([known[20:23]], dtype=tf.string)
        recorder.timed("requests", f"explain a history of {length:,} ids",
                       rc.Expect(refuse=("INVALID_ARGUMENT", "at most"), check=under_1_gb(influence_of(length)),
                                 says=f"influence [1, 3, {length}], peak RSS +<1 GB"),
                       lambda: peak_rss_growth(lambda: grpc_attempt(requests.predict.Predict, requests.request(
                           signature="explain", k=None, history=history, candidates=candidates))), via="gRPC")
    for count in (100_000, 400_000):
        texts = tf.make_tensor_proto(["ab"] * count, dtype=tf.string)
        recorder.timed("requests", f"embed_items of {count:,} two-letter texts",
                       rc.Expect(refuse=("INVALID_ARGUMENT|RESOURCE_EXHAUSTED", "at most|larger|limit"),
                                 check=under_1_gb(), says="embeddings, peak RSS +<1 GB"),
                       lambda: peak_rss_growth(lambda: grpc_attempt(requests.predict.Predict, requests.request(
                           signature="embed_items", k=None, history=None, text=texts))), via="gRPC")

    def client_k():
        with RecommenderClient(requests.target, "m") as client:
            try:
                client.recommend([known[:2]], k=2**31)
            except (ValueError, ServingError) as error:
                return rc.Attempt(False, f"{type(error).__name__}: {error}")
        return rc.Attempt(True, "answered")

    recorder.timed("requests", "client recommend(k=2**31)", rc.refuse(r"\bk\b", "2147483648"), client_k,
                   via="client")

    # a 4 KB request declaring 4M rows with a 4 KB string as its scalar k (repeated per row, it took 7 GB)
    rows = tf.make_tensor_proto([[""]], dtype=tf.string)
    rows.tensor_shape.dim[0].size = 1 << 22
    recorder.timed("requests", "scalar string k for 4M declared rows",
                   rc.Expect(refuse=("INVALID_ARGUMENT", "k|dtype|carries"), check=under_1_gb(),
                             says="refused, peak RSS +<1 GB"),
                   lambda: peak_rss_growth(lambda: grpc_attempt(requests.predict.Predict, requests.request(
                       history=rows, k=tf.make_tensor_proto(b"x" * 4096)))), via="gRPC")
    long_id = "\N{MUSICAL SYMBOL HALF NOTE}" * 20_000  # 12 bytes a character once NFC-normalised
    recorder.timed("requests", "an unknown 80 KB candidate id echoed in the error",
                   rc.refuse("INVALID_ARGUMENT", "unknown|cut"),
                   lambda: grpc_attempt(requests.predict.Predict, requests.request(
                       signature="explain", k=None, candidates=tf.make_tensor_proto([[long_id]], dtype=tf.string))),
                   via="gRPC")

    def client_facing_a_wide_answer():
        from tensorflow.core.framework import tensor_pb2, types_pb2
        from tfrec.client.answers import Expected, decode_outputs

        ids = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"x" * 3000] + [b""] * 999_999)
        ids.tensor_shape.dim.add(size=1)
        ids.tensor_shape.dim.add(size=1_000_000)
        try:
            decode_outputs({"item_ids": ids}, {"item_ids": Expected("string", (1, 3))}, "recommend")
        except ServingError as error:
            return rc.Attempt(False, str(error))
        return rc.Attempt(True, "accepted")

    recorder.timed("requests", "client facing a 2 MB answer of 1M string cells for k=3",
                   rc.refuse("INTERNAL", "shape"), client_facing_a_wide_answer, via="client")


def stalled_clients(requests, count=20):
    """`count` channels each opening a Predict stream that never sends its message; then a normal Predict and a
    Health.Check with a 5 s deadline."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from tensorflow_serving.apis import predict_pb2

    release = threading.Event()

    def never():
        release.wait()
        return
        yield  # a generator that yields nothing

    channels = [grpc.insecure_channel(requests.target) for _ in range(count)]
    calls = [channel.stream_unary("/tensorflow.serving.PredictionService/Predict",
                                  request_serializer=predict_pb2.PredictRequest.SerializeToString,
                                  response_deserializer=predict_pb2.PredictResponse.FromString).future(never())
             for channel in channels]
    try:
        time.sleep(1.0)
        start_time = time.monotonic()
        predict = grpc_attempt(requests.predict.Predict, requests.request())
        health = grpc_attempt(health_pb2_grpc.HealthStub(requests.channel).Check,
                              health_pb2.HealthCheckRequest(service=""))
        seconds = time.monotonic() - start_time
    finally:
        release.set()
        for call in calls:
            call.cancel()
        for channel in channels:
            channel.close()
    text = f"Predict: {predict.message[:80]}; Health: {health.message[:60]}; {seconds:.1f} s"
    both = predict.accepted and health.accepted and seconds < 5
    return rc.Attempt(both, text, hang=not both and (predict.hang or health.hang or seconds >= 5),
                      crash=predict.crash or health.crash)


def rest_stalled(port, count=20):
    """`count` sockets sending half a request line, then a normal model status request."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nContent-Length: 50\r\n")
            sockets.append(s)
        time.sleep(0.5)
        return rest_attempt(port, "GET", "/v1/models/m")
    finally:
        for s in sockets:
            s.close()


def rest_raw(port, data, pause=0.0, timeout=None):
    """`data` (bytes, or a list of byte chunks sent `pause` s apart) on a raw socket, as an `Attempt`: accepted
    = the first answer is 200; a reset or no answer a crash; a second answer on the connection (a smuggled
    request) is in the message."""
    chunks = [data] if isinstance(data, bytes) else data
    answer = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout or FLAGS.request_timeout) as sock:
            try:
                for chunk in chunks:
                    sock.sendall(chunk)
                    time.sleep(pause)
            except OSError:
                pass  # the server answered and closed before the client finished
            while True:
                part = sock.recv(65536)
                if not part:
                    break
                answer += part
    except (socket.timeout, TimeoutError):
        if not answer:
            return rc.Attempt(False, "no answer", hang=True)
    except OSError as error:
        if not answer:
            return rc.Attempt(False, f"connection failed: {error!r}", crash=True)
    status = answer.split(b" ", 2)[1].decode(errors="replace") if answer.startswith(b"HTTP/") else "?"
    answers = answer.count(b"HTTP/1.")
    body = answer.split(b"\r\n\r\n", 1)[-1][:200].decode(errors="replace")
    text = f"HTTP {status}: {body}" + (f" ({answers} answers on one connection)" if answers > 1 else "")
    return rc.Attempt(status == "200", text, crash=status == "?" or status.startswith("5") and status != "503")


def rest_flood(port, clients=200):
    """`clients` connections opened at once, each sending a model status request: every one must get an HTTP
    answer (200, or 503 beyond the connection limit), none a reset."""
    request = b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    results = [None] * clients

    def one(index):
        results[index] = rest_raw(port, request, timeout=30)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = collections.Counter(r.message.split(":", 1)[0] if not r.crash else "reset" for r in results)
    text = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
    return rc.Attempt(all(not r.crash and not r.hang for r in results), text, statuses,
                      crash=any(r.crash for r in results), hang=any(r.hang for r in results))


def metric_series_added(port, requests):
    """Sends `requests` ((path, body) pairs) and counts the scrape page's series before and after, as an `Attempt`
    whose facts are the number of series added."""
    import http.client

    def series():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=FLAGS.request_timeout)
        try:
            connection.request("GET", METRICS_PATH)
            page = connection.getresponse().read().decode()
        finally:
            connection.close()
        return {line.rsplit(" ", 1)[0] for line in page.splitlines() if line and not line.startswith(("#", "process_"))}

    before = series()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=FLAGS.request_timeout)
    try:
        for path, body in requests:
            connection.request("POST", path, body=body)
            connection.getresponse().read()
    finally:
        connection.close()
    added = len(series() - before)
    return rc.Attempt(True, f"{len(requests)} requests added {added} series", added)


def certificate(directory):
    """A self-signed certificate for localhost and 127.0.0.1 (openssl); (cert path, key path)."""
    cert, key = os.path.join(directory, "server.crt"), os.path.join(directory, "server.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def run_access_cases(recorder, work, base, requests):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    cert, key = certificate(work)
    server = serve("m", base, ssl_cert=cert, ssl_key=key, auth_token="s3cret-token")
    roots = open(cert, "rb").read()
    target = f"localhost:{server.port}"
    credentials = grpc.ssl_channel_credentials(roots)
    try:
        wait_serving(target, "m", credentials=credentials)
        with grpc.secure_channel(target, credentials) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for name, metadata, expect in [
                ("TLS with the bearer token", [("authorization", "Bearer s3cret-token")],
                 rc.Expect(check=requests.recommends(1, 3), says="3 items")),
                ("TLS without a token", [], rc.refuse("UNAUTHENTICATED", "bearer token")),
                ("TLS with a wrong token", [("authorization", "Bearer wrong")], rc.refuse("UNAUTHENTICATED", "token")),
                ("TLS with a non-Bearer header", [("authorization", "Basic czNjcmV0")],
                 rc.refuse("UNAUTHENTICATED", "token")),
            ]:
                recorder.timed("requests", name, expect,
                               lambda: grpc_attempt(stub.Predict, requests.request(), metadata=metadata), via="gRPC")
            recorder.timed("requests", "TLS health check without a token",
                           rc.Expect(check=lambda r: None if r.status == 1 else "not SERVING", says="SERVING"),
                           lambda: grpc_attempt(health_pb2_grpc.HealthStub(channel).Check,
                                                health_pb2.HealthCheckRequest(service="")), via="gRPC")
        with grpc.insecure_channel(target) as plain:
            recorder.timed("requests", "plaintext client on the TLS port", rc.refuse("UNAVAILABLE"),
                           lambda: grpc_attempt(prediction_service_pb2_grpc.PredictionServiceStub(plain).Predict,
                                                requests.request(), metadata=[("authorization", "Bearer s3cret-token")]),
                           via="gRPC")
        context = ssl.create_default_context(cadata=roots.decode())
        columnar = json.dumps({"inputs": {"history": [requests.catalogue[:2]], "k": 3}}).encode()
        recorder.timed("requests", "HTTPS predict without a token", rc.refuse("HTTP 401", "token"),
                       lambda: rest_attempt(server.rest_port, "POST", "/v1/models/m:predict", columnar,
                                            context=context), via="REST")
        recorder.timed("requests", "HTTPS predict with the token",
                       rc.Expect(check=lambda f: None if "outputs" in f else "no outputs", says="outputs"),
                       lambda: rest_attempt(server.rest_port, "POST", "/v1/models/m:predict", columnar,
                                            {"Authorization": "Bearer s3cret-token"}, context=context), via="REST")
    finally:
        server.stop()


def run_requests(recorder, work, export_base):
    base = os.path.join(work, "serve", "m")
    shutil.copytree(os.path.join(export_base, "m", "1"), os.path.join(base, "1"))
    with open(os.path.join(base, "1", "assets", "item_ids.txt")) as f:
        catalogue = [line.rstrip("\n") for line in f if line.strip()]
    from tfrec.server import protos

    monitoring = protos.MonitoringConfig()
    monitoring.prometheus_config.enable, monitoring.prometheus_config.path = True, METRICS_PATH
    server = serve("m", base, rest_read_timeout_seconds=REST_DEADLINE, monitoring_config=monitoring)
    try:
        wait_serving(f"127.0.0.1:{server.port}", "m")
        requests = Requests(server, catalogue)
        for name, call, request, expect in requests.cases():
            recorder.timed("requests", name, expect, lambda: grpc_attempt(call, request), via="gRPC")
        for name, method, path, body, headers, expect in requests.rest_cases():
            recorder.timed("requests", name, expect,
                           lambda: rest_attempt(server.rest_port, method, path, body, headers), via="REST")
        large_input_cases(recorder, requests)
        answers = rc.Expect(check=lambda facts: None, says="Predict and Health answer within 5 s")
        recorder.timed("requests", "20 stalled clients (headers, no message)", answers,
                       lambda: stalled_clients(requests), via="gRPC")
        recorder.timed("requests", "20 stalled REST clients (half a request)",
                       rc.Expect(check=lambda facts: None, says="model status answers"),
                       lambda: rest_stalled(server.rest_port), via="REST")
        smuggled = b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\n\r\n"
        for name, framing in (("two Content-Length headers", b"Content-Length: 2\r\nContent-Length: 47\r\n"),
                              ("Content-Length and Transfer-Encoding", b"Content-Length: 2\r\n"
                                                                       b"Transfer-Encoding: chunked\r\n")):
            recorder.timed("requests", f"REST smuggling: {name}", rc.refuse("HTTP 400", "Content-Length"),
                           lambda: rest_raw(server.rest_port, b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                                            + framing + b"\r\n{}0\r\n\r\n" + smuggled), via="REST")
        slow = [b"GET /v1/models/m HTTP/1.1\r\n"] + [b"X-Slow-%d: 1\r\n" % i for i in range(4 * REST_DEADLINE)]
        recorder.timed("requests", f"REST slowloris (a header line a second, {REST_DEADLINE} s deadline)",
                       rc.refuse("HTTP 408", "did not arrive"),
                       lambda: rest_raw(server.rest_port, slow, pause=1.0, timeout=4 * REST_DEADLINE), via="REST")
        columnar = json.dumps({"inputs": {"history": [catalogue[:2]], "k": 3}})
        few_series = rc.Expect(check=lambda added: None if added <= 10 else f"{added} series added",
                               says="at most 10 series added")
        recorder.timed("requests", "REST 3,000 made-up model names: metric series", few_series,
                       lambda: metric_series_added(server.rest_port, [(f"/v1/models/made-up-{i}:predict", columnar)
                                                                      for i in range(3000)]), via="REST")
        recorder.timed("requests", "REST 1,000 made-up signature names: metric series", few_series,
                       lambda: metric_series_added(server.rest_port, [
                           ("/v1/models/m:predict", json.dumps({"signature_name": f"made-up-{i}",
                                                                "inputs": json.loads(columnar)["inputs"]}))
                           for i in range(1000)]), via="REST")
        recorder.timed("requests", "REST 200 simultaneous clients",
                       rc.Expect(check=lambda statuses: None if set(statuses) <= {"HTTP 200", "HTTP 503"}
                                 else f"answers {dict(statuses)}", says="each answered 200 or 503"),
                       lambda: rest_flood(server.rest_port), via="REST")
        recorder.timed("requests", "recommend after the bad requests", rc.Expect(check=requests.recommends(1, 3),
                                                                                 says="still serving"),
                       lambda: grpc_attempt(requests.predict.Predict, requests.request()), via="gRPC")
        requests.channel.close()
    finally:
        server.stop()
    run_access_cases(recorder, work, base, requests)


# ---------------------------------------------------------------- hot reload and versions

class Load:
    """A client loop sending Predict to model `name` until stopped; counts answers per version and failures."""

    def __init__(self, target, name, request):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.channel = grpc.insecure_channel(target)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.request, self.versions, self.failures = request, collections.Counter(), []
        self.last, self.stop_event = None, threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        import grpc

        while not self.stop_event.is_set():
            try:
                reply = self.stub.Predict(self.request, timeout=FLAGS.request_timeout)
                self.last = reply.model_spec.version.value
                self.versions[self.last] += 1
            except grpc.RpcError as error:
                self.failures.append(f"{error.code().name}: {error.details()[:120]}")

    def wait_version(self, version, timeout=60):
        deadline = time.monotonic() + timeout
        while self.last != version and time.monotonic() < deadline:
            time.sleep(0.2)
        return self.last == version

    def stop(self):
        self.stop_event.set()
        self.thread.join(30)
        self.channel.close()

    def summary(self):
        total = sum(self.versions.values()) + len(self.failures)
        return (f"{total} requests, {len(self.failures)} failed, answers per version {dict(sorted(self.versions.items()))}"
                + (f"; first failure {self.failures[0]}" if self.failures else ""))


def first_answer(target, request, timeout):
    """The first accepted (or crashed) Predict `Attempt` within `timeout` s, retrying refusals (a server still
    loading), else the last refusal."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        attempt = grpc_attempt(stub.Predict, request)
        while not (attempt.accepted or attempt.crash) and time.monotonic() < deadline:
            time.sleep(0.5)
            attempt = grpc_attempt(stub.Predict, request)
    return attempt


def copy_slowly(source, target, pause):
    """Copies the version directory `source` to `target` file by file in place (no rename), pausing between."""
    os.makedirs(target)
    for root, _, files in os.walk(source):
        relative = os.path.relpath(root, source)
        os.makedirs(os.path.join(target, relative), exist_ok=True)
        for file in sorted(files):
            shutil.copy2(os.path.join(root, file), os.path.join(target, relative, file))
            time.sleep(pause)


def served_state(requests_target, name):
    """{version: state name} of the model's status."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    with grpc.insecure_channel(requests_target) as channel:
        reply = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
    return {s.version: get_model_status_pb2.ModelVersionStatus.State.Name(s.state) for s in reply.model_version_status}


def run_reload(recorder, work, run_dir, export_base):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    root = os.path.join(work, "reload")
    base = os.path.join(root, "r")
    shutil.copytree(os.path.join(export_base, "m", "1"), os.path.join(base, "1"))
    with open(os.path.join(base, "1", "assets", "item_ids.txt")) as f:
        history = [line.rstrip("\n") for line in f if line.strip()][:2]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "r"
    request.inputs["history"].CopyFrom(tf.make_tensor_proto([history], dtype=tf.string))
    request.inputs["k"].CopyFrom(tf.make_tensor_proto(3, dtype=tf.int32))
    no_failures = rc.Expect(check=lambda facts: facts, says="0 failed requests, the new version served")

    def case(name, server, action, want_version, expect=no_failures):
        start_time = time.monotonic()
        load = Load(f"127.0.0.1:{server.port}", "r", request)
        try:
            problem = action()
            reached = load.wait_version(want_version)
        finally:
            load.stop()
        if not problem and load.failures:
            problem = f"{len(load.failures)} failed requests"
        if not problem and not reached:
            problem = f"still answering with version {load.last}, not {want_version}"
        attempt = rc.Attempt(True, load.summary(), problem)
        recorder.add("reload", name, expect, attempt, time.monotonic() - start_time, via="gRPC")

    def exports():
        for version in (2, 3):
            result = command("tfrec.export", [f"--run_dir={run_dir}", f"--export_base={root}", "--model_name=r"],
                             timeout=FLAGS.timeout * 2)
            if not result.accepted:
                return f"export of version {version} failed: {result.message[-200:]}"
        return None

    server = serve("r", base)
    try:
        wait_serving(f"127.0.0.1:{server.port}", "r")
        case("hot reload under load (2 exports)", server, exports, 3)
        case("version copied in without a rename", server,
             lambda: copy_slowly(os.path.join(base, "3"), os.path.join(base, "4"), 0.3), 4)
    finally:
        server.stop()
    os.makedirs(os.path.join(base, "5"))
    with open(os.path.join(base, "5", "saved_model.pb"), "wb") as f:
        f.write(b"not a SavedModel")
    start_time = time.monotonic()
    try:
        server = serve("r", base)
    except Exception:  # noqa: BLE001 - a server that cannot start with one corrupt version is the failure shown
        recorder.add("reload", "corrupt latest version at restart", no_failures,
                     rc.Attempt(False, traceback.format_exc(limit=-2), crash=True), time.monotonic() - start_time)
        return
    try:
        target = f"127.0.0.1:{server.port}"
        attempt = first_answer(target, request, timeout=60)
        if attempt.accepted:
            version = attempt.facts.model_spec.version.value
            states = served_state(target, "r")
            attempt.facts = None if version == 4 else f"answered with version {version}, expected the intact 4"
            attempt.message = f"answered by version {version}; status {states}"
        recorder.add("reload", "corrupt latest version at restart", no_failures, attempt,
                     time.monotonic() - start_time, via="gRPC")

        def repair():
            shutil.rmtree(os.path.join(base, "5"))
            copy_slowly(os.path.join(base, "4"), os.path.join(base, "5"), 0.0)

        case("corrupt version repaired in place", server, repair, 5)
        for version, file in ((6, "item_ids.txt"), (7, "item_titles.txt")):
            case(f"new version with a truncated {file}", server,
                 lambda: truncated_catalogue(root, base, target, file, version), 5,
                 rc.Expect(check=lambda facts: facts, says=f"0 failed requests, version {version} refused, 5 serving"))
        other = command("tfrec.export", [f"--run_dir={run_dir}", f"--export_base={root}", "--model_name=other",
                                         "--catalogue_dtype=int8"], timeout=FLAGS.timeout * 2)
        case("served version replaced in place by another model", server,
             lambda: replaced_in_place(root, base, os.path.join(root, "other", "1")) if other.accepted
             else f"export of the other model failed: {other.message[-200:]}", 5,
             rc.Expect(check=lambda facts: facts, says="0 failed requests, the change logged and reloaded"))
    finally:
        server.stop()
    carried_catalogue(recorder, work, run_dir, export_base)


def truncated_catalogue(root, base, target, file, version):
    """Publishes a copy of version 5 as `version` with half its `assets/file`; returns what is wrong unless the
    server refuses that version (END) and version 5 keeps serving."""
    staging = os.path.join(root, f"staging-{version}")
    shutil.copytree(os.path.join(base, "5"), staging)
    path = os.path.join(staging, "assets", file)
    with open(path, "rb+") as f:
        f.truncate(os.path.getsize(path) // 2)
    os.rename(staging, os.path.join(base, str(version)))
    time.sleep(5)  # ten polls
    states = served_state(target, "r")
    return None if states.get(version) == "END" and states.get(5) == "AVAILABLE" else f"status {states}"


class LogLines(logging.Handler):
    """Collects the messages the server logs (absl's Python logger) while attached."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def wait_for(self, text, timeout=60):
        deadline = time.monotonic() + timeout
        while not any(text in m for m in self.messages) and time.monotonic() < deadline:
            time.sleep(0.2)
        return any(text in m for m in self.messages)


def replaced_in_place(root, base, other):
    """Replaces the served version 5 by the version directory `other` (another model) under the same number;
    returns what is wrong unless the server logs the change and reloads it."""
    lines, logger = LogLines(), logging.getLogger("absl")
    level = logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)  # "Reloaded ..." is an INFO line
    try:
        staging, old = os.path.join(root, "staging-5"), os.path.join(root, "old-5")
        shutil.copytree(other, staging)
        os.rename(os.path.join(base, "5"), old)
        os.rename(staging, os.path.join(base, "5"))
        shutil.rmtree(old)
        if not lines.wait_for("Reloaded model 'r' version 5"):
            return f"not reloaded; logged {[m[:100] for m in lines.messages if 'version 5' in m][:3]}"
        return None if any("changed on disk" in m for m in lines.messages) else "reloaded without logging why"
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)


def carried_catalogue(recorder, work, run_dir, export_base):
    """`tfrec.export` after an `--update_catalog` version, when the newest version is empty, then broken (a
    truncated items.jsonl): the added items kept, or the export refused naming what is broken."""
    base = os.path.join(work, "carry")
    model_dir = os.path.join(base, "m")
    shutil.copytree(os.path.join(export_base, "m", "1"), os.path.join(model_dir, "1"))
    added, more = os.path.join(base, "added.csv"), os.path.join(base, "more.csv")
    write_bytes(added, b"item_id,text\nnew-1,a space opera about robots\nnew-2,a quiet romance in paris\n")
    write_bytes(more, b"item_id,text\nnew-3,a heist across three cities\n")

    def export(*extra):
        return command("tfrec.export", [f"--run_dir={run_dir}", f"--export_base={base}", "--model_name=m", *extra],
                       timeout=FLAGS.timeout * 2)

    def keeps_added(attempt):
        if attempt.accepted:
            version = max(int(v) for v in layout_versions(base))
            with open(os.path.join(model_dir, str(version), "assets", "items.jsonl")) as f:
                ids = {json.loads(line)["item_id"] for line in f if line.strip()}
            lost = sorted({"new-1", "new-2"} - ids)
            attempt.facts = {"problem": f"version {version} lacks {lost}" if lost else None}
            attempt.message = f"version {version} holds {len(ids)} items; {attempt.message[-200:]}"
        return attempt

    setup_result = export(f"--update_catalog={added}")
    if not setup_result.accepted:
        recorder.add("reload", "export --update_catalog (setup)", rc.Expect(check=lambda facts: None, says="exported"),
                     setup_result, 0, via="tfrec.export")
        return
    keeps = rc.Expect(check=lambda facts: facts["problem"], says="the added items new-1, new-2 kept")

    def beside_empty():
        os.makedirs(os.path.join(model_dir, "3"))
        return keeps_added(export())

    recorder.timed("reload", "export after --update_catalog, the newest version empty", keeps, beside_empty,
                   via="tfrec.export")

    def over_truncated():
        newest = max(int(v) for v in layout_versions(base))
        items = os.path.join(model_dir, str(newest), "assets", "items.jsonl")
        with open(items, "rb+") as f:
            f.truncate(os.path.getsize(items) - 30)
        return keeps_added(export(f"--update_catalog={more}"))

    recorder.timed("reload", "export --update_catalog over a newest version with a truncated items.jsonl",
                   rc.Expect(refuse=(r"items\.jsonl", "incomplete|truncated"), check=keeps.check, says=keeps.says),
                   over_truncated, via="tfrec.export")


# ---------------------------------------------------------------- tables

def table(results):
    lines = ["| case | via | expected | outcome | s | message |", "|---|---|---|---|---|---|"]
    for r in results:
        message = r["message"].replace("|", "\\|")
        message = message if len(message) <= 150 else message[:147] + "..."
        expected = r["expected"].replace("|", "\\|")
        outcome = r["outcome"] if r["outcome"] == "handled" else f"**{r['outcome']}**"
        lines.append(f"| {r['case'].replace('|', '/')} | {r['via']} | {expected} | {outcome} | {r['seconds']:.1f} "
                     f"| {message} |")
    return "\n".join(lines)


def totals(results):
    by_class = collections.OrderedDict((k, collections.Counter()) for k in CLASSES)
    for r in results:
        by_class[r["class"]][r["outcome"]] += 1
    lines = [f"| class | cases | {' | '.join(rc.OUTCOMES)} |", "|---|---|" + "---|" * len(rc.OUTCOMES)]
    overall = collections.Counter()
    for klass, counter in by_class.items():
        if counter:
            overall.update(counter)
            lines.append(f"| {klass} | {sum(counter.values())} | "
                         + " | ".join(str(counter[o]) for o in rc.OUTCOMES) + " |")
    lines.append(f"| **all** | {sum(overall.values())} | " + " | ".join(str(overall[o]) for o in rc.OUTCOMES) + " |")
    return "\n".join(lines)


TITLES = {"data": "Data files", "flags": "Flag sets", "kills": "Kills (SIGKILL, then a rerun)",
          "requests": "Requests (gRPC stubs and raw HTTP)", "reload": "Hot reload under load and versions"}


def report(results, seconds):
    parts = ["## Reliability: hardening cases replayed", "",
             f"Command: `nice -n 10 python scripts/bench_reliability.py` ({seconds / 60:.1f} min). "
             f"Machine: {benchlib.machine()}.", "",
             "Outcomes: " + "; ".join(f"`{o}`" for o in rc.OUTCOMES) + " (see `scripts/reliability_cases.py`). "
             "Data cases run in-process through the call `python -m tfrec.data describe` makes (via in-process), "
             "a sample also through the CLI (via CLI); every other case runs the real command or server.", "",
             "### Totals", "", totals(results)]
    for klass in CLASSES:
        rows = [r for r in results if r["class"] == klass]
        if rows:
            parts += ["", f"### {TITLES[klass]}", "", table(rows)]
    return "\n".join(parts)


def setup(work):
    """A finished tiny training run and its export, through the real CLIs: (run_dir, export_base)."""
    run_dir, export_base = os.path.join(work, "run"), os.path.join(work, "exports")
    for module, args in (("tfrec.train", [*TINY_TRAIN, f"--run_dir={run_dir}"]),
                         ("tfrec.export", [f"--run_dir={run_dir}", f"--export_base={export_base}", "--model_name=m"])):
        result = command(module, args, timeout=600)
        if not result.accepted:
            sys.exit(f"setup: python -m {module} failed: {result.message}")
    return run_dir, export_base


def main(argv):
    del argv
    unknown = sorted(set(FLAGS.classes) - set(CLASSES))
    if unknown:
        raise app.UsageError(f"--classes: unknown {unknown}; expected some of {list(CLASSES)}")
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="bench_reliability-")
    recorder = Recorder(work)
    needs_model = set(FLAGS.classes) - {"data"}
    run_dir, export_base = setup(work) if needs_model else (None, None)
    runners = {"data": lambda: run_data(recorder, work), "flags": lambda: run_flags(recorder, work, run_dir, export_base),
               "kills": lambda: run_kills(recorder, work, run_dir),
               "requests": lambda: run_requests(recorder, work, export_base),
               "reload": lambda: run_reload(recorder, work, run_dir, export_base)}
    broken = []
    for klass in FLAGS.classes:
        try:
            runners[klass]()
        except Exception:  # noqa: BLE001 - a fault of the bench itself: report it, keep the other classes
            traceback.print_exc()
            broken.append(klass)
    seconds = time.monotonic() - started
    body = report(recorder.results, seconds)
    print("\n" + body)
    os.makedirs(FLAGS.results_dir, exist_ok=True)
    name = "results.json" if set(FLAGS.classes) == set(CLASSES) else f"results-{'-'.join(FLAGS.classes)}.json"
    benchlib.write_atomic(os.path.join(FLAGS.results_dir, name),
                          json.dumps({"seconds": round(seconds, 1), "results": recorder.results}, indent=1) + "\n")
    if FLAGS.output and set(FLAGS.classes) == set(CLASSES) and not broken:
        benchlib.write_section(FLAGS.output, "bench_reliability", body)
    if broken:
        sys.exit(f"the bench itself failed in class(es) {broken} (traceback above)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    app.run(main)
