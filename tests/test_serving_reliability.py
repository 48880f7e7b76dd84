"""The embedded server under stalled clients, and its handling of broken, half-copied and repaired versions."""

import os
import shutil
import threading
import time

import grpc
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc, predict_pb2

import serving_fixtures as sf
from tfrec.client import RecommenderClient
from tfrec.server import config
from tfrec.server.model_manager import MAX_LOAD_ATTEMPTS, ModelManager
from tfrec.server.server import Server, ServerOptions

State = get_model_status_pb2.ModelVersionStatus.State
PREDICT = "/tensorflow.serving.PredictionService/Predict"
SLOTS = 24
READ_TIMEOUT = 5.0


def _serving(target, timeout=60.0):
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.1)
    raise TimeoutError(f"{target} not SERVING")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    sf.save_version(str(base / "tiny"), 1)
    server = Server(ServerOptions(config.single_model_config("tiny", str(base / "tiny")), port=0, poll_wait_seconds=0,
                                  max_concurrent_rpcs=SLOTS, grpc_read_timeout_seconds=READ_TIMEOUT))
    server.start()
    try:
        _serving(f"127.0.0.1:{server.port}")
        yield server
    finally:
        server.stop()


def _stalled_predicts(target, count):
    """`count` Predict calls that send their headers and never their message; returns (futures, release)."""
    release = threading.Event()

    def nothing():
        release.wait()
        yield from ()

    channel = grpc.insecure_channel(target)
    call = channel.stream_unary(PREDICT, request_serializer=predict_pb2.PredictRequest.SerializeToString,
                                response_deserializer=predict_pb2.PredictResponse.FromString)
    return [call.future(nothing(), timeout=60) for _ in range(count)], release, channel


def test_stalled_clients_cost_one_slot_each_and_never_block_predict_or_health(server):
    target = f"127.0.0.1:{server.port}"
    stalled, release, channel = _stalled_predicts(target, SLOTS - 2)  # more than the 16 model threads
    try:
        time.sleep(0.5)
        with RecommenderClient(target, "tiny", retries=0, timeout=5) as client:
            assert client.recommend([["item1", "item2"]], k=3).item_ids.shape == (1, 3)
        with grpc.insecure_channel(target) as health_channel:
            health = health_pb2_grpc.HealthStub(health_channel)
            reply = health.Check(health_pb2.HealthCheckRequest(service="tiny"), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            extra, release_extra, extra_channel = _stalled_predicts(target, 2)  # every slot taken now
            try:
                time.sleep(0.5)
                with pytest.raises(grpc.RpcError) as info:
                    health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                release_extra.set()  # they end without sending a message
                for future in extra:
                    with pytest.raises(grpc.RpcError) as info:
                        future.result(timeout=10)
                    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                    assert f"{PREDICT}: the call ended without a request message" in info.value.details()
            finally:
                release_extra.set()
                extra_channel.close()
            assert not any(future.done() for future in stalled)  # all that was answered while they waited
            for future in stalled:  # the read timeout frees their slots
                with pytest.raises(grpc.RpcError) as info:
                    future.result(timeout=READ_TIMEOUT + 10)
                assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert f"{PREDICT}: no request message within {READ_TIMEOUT:g} s" in info.value.details()
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
                health_pb2.HealthCheckResponse.SERVING
    finally:
        release.set()
        channel.close()


def _manager(base):
    return ModelManager(config.single_model_config("tiny", str(base)))


def _states(manager):
    return {s.version: (State.Name(s.state), s.error.message if s.error else "") for s in manager.status("tiny")}


@pytest.fixture(scope="module")
def intact(tmp_path_factory):
    """An intact SavedModel version directory to copy from."""
    base = tmp_path_factory.mktemp("intact")
    sf.save_version(str(base), 1, seed=1, warmup=False)
    return base / "1"


def test_version_copied_without_atomic_rename_loads_once_complete(tmp_path, intact):
    sf.save_version(str(tmp_path), 1, warmup=False)
    manager = _manager(tmp_path)
    manager.poll()
    (tmp_path / "2").mkdir()
    shutil.copy(intact / "saved_model.pb", tmp_path / "2")  # the copy has begun: no variables yet
    for _ in range(MAX_LOAD_ATTEMPTS + 2):
        manager.poll()
    states = _states(manager)
    assert states[1] == ("AVAILABLE", "")
    assert states[2][0] == "END" and "cannot load" in states[2][1]
    assert manager.status("tiny")[0].attempts == MAX_LOAD_ATTEMPTS  # unchanged files are not retried forever
    shutil.copytree(intact / "variables", tmp_path / "2" / "variables")  # the copy completes
    manager.poll()
    assert _states(manager) == {2: ("AVAILABLE", ""), 1: ("END", "")}
    manager.stop()


def test_corrupt_newest_version_at_startup_serves_the_newest_loadable_and_repairs_in_place(tmp_path, intact):
    base = tmp_path / "tiny"
    for version in (1, 2, 3):
        sf.save_version(str(base), version, seed=version, warmup=False)
    pb = base / "3" / "saved_model.pb"
    original = pb.read_bytes()
    pb.write_bytes(b"not a SavedModel")
    server = Server(ServerOptions(config.single_model_config("tiny", str(base)), port=0, poll_wait_seconds=0))
    server.start()
    try:
        target = f"127.0.0.1:{server.port}"
        _serving(target)
        with RecommenderClient(target, "tiny") as client:
            assert client.recommend([["item1"]], k=2).version == 2
        with grpc.insecure_channel(target) as channel:
            status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "tiny"}), timeout=10)
        broken, serving = status.model_version_status
        assert (broken.version, broken.state, serving.version, serving.state) == (3, State.END, 2, State.AVAILABLE)
        assert broken.status.error_code != 0 and "cannot load .../tiny/3" in broken.status.error_message
        assert str(base) not in broken.status.error_message  # the server's layout stays in its log
        assert serving.status.error_code == 0
        pb.write_bytes(original)  # repaired in place
        os.utime(pb, ns=(time.time_ns(), time.time_ns()))
        server.manager.poll()
        with RecommenderClient(target, "tiny") as client:
            assert client.recommend([["item1"]], k=2).version == 3
            assert [(s.version, s.state, s.error_code) for s in client.status()] == [
                (3, "AVAILABLE", 0), (2, "END", 0)]
    finally:
        server.stop()


@pytest.mark.parametrize("field, value, expected", [
    ("port", -1, r"port=-1: expected a TCP port in 0..65535"),
    ("rest_api_port", 70000, r"rest_api_port=70000: expected a TCP port"),
    ("max_workers", 0, r"max_workers=0: expected at least 1"),
    ("grpc_read_timeout_seconds", 0.0, r"grpc_read_timeout_seconds=0.0: expected a positive number"),
    ("rest_max_connections", 0, r"rest_max_connections=0: expected at least 1"),
    ("auth_token", "t\u00f6ken", r"auth_token: expected printable ASCII without spaces; character 2 is '\\xf6'"),
    ("auth_token", "", r"auth_token: expected a token, got nothing"),
])
def test_server_options_out_of_range_are_refused_by_name(field, value, expected):
    with pytest.raises(config.ConfigError, match=expected):
        ServerOptions(model_config=config.single_model_config("tiny", "/nonexistent"), **{field: value})
