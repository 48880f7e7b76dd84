"""Every command's `--help`: its own flags, grouped, exit status 0, no TensorFlow log lines; and the
verbosity the commands read before TensorFlow loads."""

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

# The help groups of each command, in order, and flags each must list.
EXPECTED = {
    "tfrec.train": {"run flags": ["run_dir", "warm_start_from"], "data flags (DataConfig)": ["source", "split"],
                    "model flags (ModelConfig)": ["task", "encoder"], "train flags (TrainConfig)": ["epochs"]},
    "tfrec.evaluate": {"evaluation flags": ["run_dir", "eval_split"], "data flags (DataConfig)": ["source"]},
    "tfrec.export": {"export flags": ["run_dir", "model_name", "update_catalog", "keep_catalogue"]},
    "tfrec.refresh": {"refresh flags": ["serving_run", "run_dir", "model_name", "min_improvement", "replay"],
                      "data flags (DataConfig)": ["source"], "train flags (TrainConfig)": ["epochs"]},
    "tfrec.serve": {"serving flags": ["model_name", "model_base_path", "port"]},
    "tfrec.demo": {"demo flags": ["data_dir", "users"]},
    "tfrec.launch": {"launch flags": ["workers"]},
    "tfrec.data": {"commands": [], "describe flags": ["format"], "convert flags": ["output_dir", "num_shards"],
                   "data flags (DataConfig)": ["source"]},
}


def sections(text):
    """{title: body} of the paragraphs of a help text whose first line is "title:"."""
    found = {}
    for paragraph in text.split("\n\n"):
        first, _, body = paragraph.partition("\n")
        if first.endswith(":") and not first.startswith(" "):
            found[first[:-1]] = body
    return found


def run(module, *args):
    """`python -m module args`, the environment without the TensorFlow log settings (the command sets them)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY")}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("module", sorted(EXPECTED))
def test_help_lists_the_command_flags_grouped_and_exits_0(module):
    result = run(module, "--help")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stderr == ""  # no TensorFlow or absl log lines
    groups = sections(result.stdout)
    assert [title for title in groups if title in EXPECTED[module]] == list(EXPECTED[module])
    for title, names in EXPECTED[module].items():
        for name in names:
            assert f"  --{name}: " in groups[title] or f"  --[no]{name}: " in groups[title], (title, name)
    assert "--helpfull" in result.stdout and ">>>" not in result.stdout
    assert "--tpu" not in result.stdout and "pfor" not in result.stdout  # TensorFlow's flags are for --helpfull


def test_data_help_lists_the_subcommands():
    commands = sections(run("tfrec.data", "-h").stdout)["commands"].splitlines()
    assert [line.split()[0] for line in commands] == ["describe", "convert"]
    assert all(len(line.split()) > 3 for line in commands)  # each with what it does


def test_a_usage_error_is_one_line_naming_it_not_the_flag_list():
    result = run("tfrec.export", "stray", "--run_dir=/nonexistent", "--model_name=m")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "tfrec.export: error: unexpected arguments: ['stray']"
    assert "--run_dir:" not in result.stderr  # no flag list


def test_helpfull_lists_every_flag_and_exits_0():
    result = run("tfrec.data", "--helpfull")  # absl's own listing
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--source:" in result.stdout and "--verbosity:" in result.stdout and "logtostderr:" in result.stdout


@pytest.mark.parametrize("args,level", [((), "3"), (("--verbosity=-1",), "3"), (("-v", "1"), "0"),
                                        (("--source=x", "--verbosity", "2"), "0")])
def test_tensorflow_log_level_follows_the_command_line_verbosity(args, level):
    code = ("import os, sys; from tfrec import quiet; quiet.configure('__main__'); "
            "print(os.environ['TF_CPP_MIN_LOG_LEVEL'], 'tensorflow' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.split() == [level, "False"], result.stderr  # set before TensorFlow is imported
