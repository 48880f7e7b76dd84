"""The serving/ deployment files parse with TF Serving's messages; config errors are clear."""

import os
import re
import subprocess
import sys

import pytest

from tfrec.server import config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVING = os.path.join(REPO, "serving")


def test_models_config_is_a_valid_model_server_config():
    cfg = config.read_model_server_config(os.path.join(SERVING, "models.config"))
    models = {m.name: m for m in cfg.model_config_list.config}
    assert set(models) == {"retrieval", "ranking"}
    assert models["retrieval"].base_path == "/models/retrieval"
    assert models["retrieval"].model_version_policy.latest.num_versions == 2
    assert dict(models["retrieval"].version_labels) == {"stable": 1, "canary": 2}


def test_batching_and_monitoring_configs_parse():
    params = config.read_batching_parameters(os.path.join(SERVING, "batching.config"))
    assert params.max_batch_size.value == 64 and list(params.allowed_batch_sizes)[-1] == 64
    assert params.batch_timeout_micros.value == 2000
    monitoring = config.read_monitoring_config(os.path.join(SERVING, "monitoring.config"))
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"


def test_docker_compose_mounts_the_configs_and_a_recent_image():
    with open(os.path.join(SERVING, "docker-compose.yml")) as f:
        text = f.read()
    major, minor = map(int, re.search(r"image: tensorflow/serving:(\d+)\.(\d+)", text).groups())
    assert (major, minor) >= (2, 20)
    for name in ("models.config", "batching.config", "monitoring.config"):
        assert f"./{name}:/config/{name}" in text
    assert "../exports:/models" in text and "--model_config_file=/config/models.config" in text


@pytest.mark.parametrize(
    "text, message",
    [
        ("model_config_list { config { name: 'a' base_path: '/a' } ", r"bad\.config:1:\d+ : .*ModelServerConfig"),
        ("model_config_list { config { name: 'a' } }", r"config\[0\] \(name 'a'\): missing base_path"),
        (
            "model_config_list { config { name: 'a' base_path: '/a' } config { name: 'a' base_path: '/b' } }",
            r"config\[1\] \(name 'a'\): duplicated model name",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' model_version_policy { specific {} } } }",
            "specific policy lists no versions",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' model_platform: 'pytorch' } }",
            "model_platform 'pytorch'; expected 'tensorflow'",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' version_labels { key: 'x' value: 0 } } }",
            "version label 'x' -> 0",
        ),
        ("model_config_list { }", "model_config_list has no model"),
        ("model_config_list { config { nme: 'a' } }", r"bad\.config:1:\d+ : .*no field named \"nme\""),
    ],
)
def test_model_config_errors_name_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.config"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match=message):
        config.read_model_server_config(str(path))


@pytest.mark.parametrize(
    "reader, text, message",
    [
        (config.read_batching_parameters, "max_batch_size: 3", r"1:\d+ : .*Expected \"{\""),
        (config.read_batching_parameters, "max_batch_size { value: 0 }", "max_batch_size is 0; expected > 0"),
        (
            config.read_batching_parameters,
            "max_batch_size { value: 32 } allowed_batch_sizes: [8, 16]",
            "last allowed_batch_sizes entry 16 must equal max_batch_size 32",
        ),
        (config.read_batching_parameters, "allowed_batch_sizes: [16, 8]", "must be positive and increasing"),
        (config.read_monitoring_config, "prometheus_config { path: 'metrics' }", "must start with '/'"),
    ],
)
def test_batching_and_monitoring_errors(tmp_path, reader, text, message):
    path = tmp_path / "bad.config"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match=message):
        reader(str(path))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(config.ConfigError, match=r"cannot read model config file .*nowhere\.config"):
        config.read_model_server_config(str(tmp_path / "nowhere.config"))


def _serve(args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "tfrec.serve", *args], cwd=REPO, capture_output=True, text=True, timeout=60, env=env
    )


def test_cli_rejects_a_bad_config_file(tmp_path):
    path = tmp_path / "bad.config"
    path.write_text("model_config_list { config { name: 'a' } }")
    result = _serve([f"--model_config_file={path}", "--server=embedded"])
    assert result.returncode != 0
    assert "Invalid serving configuration" in result.stderr and "missing base_path" in result.stderr


def test_cli_execs_tensorflow_model_server_with_the_same_configuration(tmp_path):
    fake = tmp_path / "bin" / "tensorflow_model_server"  # stands in for the binary absent here
    fake.parent.mkdir()
    record = tmp_path / "argv.txt"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {record}\n")
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    result = _serve(
        [
            "--model_config_file=serving/models.config",
            "--enable_batching",
            "--batching_parameters_file=serving/batching.config",
            "--monitoring_config_file=serving/monitoring.config",
            "--port=9100",
            "--rest_api_port=9101",
            "--file_system_poll_wait_seconds=5",
            "--host=0.0.0.0",
        ],
        env=env,
    )
    assert result.returncode == 0, result.stderr
    argv = record.read_text().split()
    assert argv == [
        "--port=9100",
        f"--model_config_file={SERVING}/models.config",
        "--file_system_poll_wait_seconds=5",
        "--enable_batching=true",
        f"--batching_parameters_file={SERVING}/batching.config",
        f"--monitoring_config_file={SERVING}/monitoring.config",
        "--rest_api_port=9101",
    ]


def test_only_integer_directories_with_a_saved_model_are_versions(tmp_path):
    from tfrec.server.model_manager import versions_on_disk

    for name, has_model in (("1", True), ("12", True), ("3", False), ("007", True), (".tmp-4-x", True), ("²", True)):
        (tmp_path / name).mkdir()
        if has_model:
            (tmp_path / name / "saved_model.pb").write_bytes(b"")
    assert versions_on_disk(str(tmp_path)) == [1, 12]
    assert versions_on_disk(str(tmp_path / "missing")) == []
