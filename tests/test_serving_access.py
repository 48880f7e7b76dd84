"""Who may use the embedded server: config reload off unless allowed and only under --model_root,
a bearer token, TLS, and the real binary only where it binds as the operator said."""

import os
import subprocess
import sys

import grpc
import pytest
from google.protobuf import text_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

import serving_fixtures as sf
from tfrec.client import RecommenderClient, ServingError

REPO = sf.REPO_ROOT


def _reload(target, base_path, credentials=None):
    config = text_format.Parse(
        f'model_config_list {{ config {{ name: "tiny" base_path: "{base_path}" model_platform: "tensorflow" }} }}',
        model_server_config_pb2.ModelServerConfig())
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    with channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config), timeout=30)
    return info.value


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    sf.save_version(str(base / "tiny"), 1, seed=0)
    return base


def test_config_reload_is_refused_unless_allowed_and_only_under_the_model_root(models, tmp_path):
    planted = tmp_path / "planted"
    sf.save_version(str(planted), 1, seed=1)
    plain = sf.ServerProcess([f"--model_name=tiny", f"--model_base_path={models / 'tiny'}"], sf.free_port(),
                             str(tmp_path / "plain.log"))
    allowed = sf.ServerProcess([f"--model_name=tiny", f"--model_base_path={models / 'tiny'}",
                                "--allow_config_reload", f"--model_root={models}"], sf.free_port(),
                               str(tmp_path / "allowed.log"))
    try:
        plain.wait_serving()
        allowed.wait_serving()
        error = _reload(plain.target, models / "tiny")
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "--allow_config_reload" in error.details()
        error = _reload(allowed.target, planted)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "outside the server's --model_root" in error.details() and str(planted) in error.details()
        error = _reload(allowed.target, f"{models}/../{planted.parent.name}/planted")  # no way out by ..
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        with RecommenderClient(allowed.target, "tiny") as client:  # the served model is untouched
            assert client.recommend([["item1"]], k=2).version == 1
    finally:
        plain.stop()
        allowed.stop()


def _certificate(directory):
    """A self-signed certificate for localhost / 127.0.0.1 and its key (PEM paths)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_and_bearer_token(models, tmp_path):
    cert, key = _certificate(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    port = sf.free_port()
    server = sf.ServerProcess([f"--model_name=tiny", f"--model_base_path={models / 'tiny'}", f"--ssl_cert={cert}",
                               f"--ssl_key={key}", f"--auth_token_file={token_file}"], port, str(tmp_path / "tls.log"))
    target, roots = f"localhost:{port}", cert.read_bytes()
    try:
        with RecommenderClient(target, "tiny", auth_token="s3cret-token", root_certificates=roots) as client:
            client.wait_until_available(timeout=90, process=server.process)
            assert client.recommend([["item1"]], k=2).item_ids.shape == (1, 2)
        for token in (None, "wrong"):
            with RecommenderClient(target, "tiny", auth_token=token, root_certificates=roots, retries=0) as client:
                with pytest.raises(ServingError) as err:
                    client.recommend([["item1"]], k=2)
            assert err.value.code == grpc.StatusCode.UNAUTHENTICATED and "bearer token" in err.value.message
        with RecommenderClient(target, "tiny", auth_token="s3cret-token", retries=0, timeout=5) as client:
            with pytest.raises(ServingError):  # plaintext against a TLS port
                client.recommend([["item1"]], k=2)
        with grpc.secure_channel(target, grpc.ssl_channel_credentials(roots)) as channel:  # health needs no token
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        assert server.stop() == 0, server.log()[-2000:]


def _serve(args, env=None):
    return subprocess.run([sys.executable, "-m", "tfrec.serve", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.mark.parametrize("args, message", [
    (["--allow_config_reload"], "--allow_config_reload needs --model_root"),
    (["--ssl_cert=/no/such.crt", "--ssl_key=/no/such.key"], "ssl_cert='/no/such.crt': cannot read it"),
    (["--ssl_cert=x.crt"], "TLS needs both the certificate and its private key"),
    (["--auth_token_file=/no/such/token"], "--auth_token_file=/no/such/token: cannot read it"),
])
def test_bad_access_flags_are_named(models, args, message):
    result = _serve([f"--model_name=tiny", f"--model_base_path={models / 'tiny'}", "--server=embedded", *args])
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize("content, message", [
    (b"t\xc3\xb6ken\n", "expected printable ASCII without spaces; character 2 is '\\xc3'"),
    (b" \n", "expected a token, got nothing"),
])
def test_a_token_file_that_cannot_authenticate_anyone_is_refused_at_start(models, tmp_path, content, message):
    token_file = tmp_path / "token"
    token_file.write_bytes(content)
    result = _serve([f"--model_name=tiny", f"--model_base_path={models / 'tiny'}", "--server=embedded",
                     f"--auth_token_file={token_file}"])
    assert result.returncode != 0 and f"--auth_token_file={token_file}: {message}" in result.stderr, \
        result.stderr[-2000:]


def test_the_real_binary_runs_only_when_binding_every_interface_is_asked_for(models, tmp_path):
    fake = tmp_path / "bin" / "tensorflow_model_server"  # stands in for the binary absent here
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    model = [f"--model_name=tiny", f"--model_base_path={models / 'tiny'}"]
    result = _serve([*model, "--server=tfserving"], env)
    assert result.returncode != 0 and "--host=127.0.0.1: tensorflow_model_server binds every interface" in result.stderr
    result = _serve([*model, "--server=tfserving", "--host=0.0.0.0", f"--auth_token_file={fake}"], env)
    assert result.returncode != 0 and "--auth_token_file is an option of the embedded server" in result.stderr
    # auto with the binary on PATH but a loopback host: the embedded server (here stopped by a bad flag).
    result = _serve([*model, "--ssl_cert=x.crt"], env)
    assert "serving with the embedded server" in result.stderr
    assert "TLS needs both the certificate and its private key" in result.stderr
