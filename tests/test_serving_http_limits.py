"""The REST port's transport limits under hostile clients, over raw sockets: smuggling, slowloris, floods, bad JSON."""

import json
import socket
import threading
import time

import pytest

from test_serving_rest import _start, _wait_available, models, server  # noqa: F401 - fixtures

DEADLINE = 1.0
MAX_CONNECTIONS = 8


@pytest.fixture(scope="module")
def limited(models):  # noqa: F811 - the imported fixture
    """A 1 s whole-request deadline and at most MAX_CONNECTIONS open connections."""
    server = _start(models[0], rest_read_timeout_seconds=DEADLINE, rest_max_connections=MAX_CONNECTIONS)
    try:
        _wait_available(server)
        yield server
    finally:
        server.stop()


def _answers(sock, timeout=10.0):
    """Every byte the server sends until it closes the connection (or `timeout` passes)."""
    sock.settimeout(timeout)
    data, end = b"", time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    return data


def _exchange(port, raw):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        return _answers(sock)


STATUS_REQUEST = b"GET /v1/models/tiny HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("framing", [
    b"Content-Length: 2\r\nContent-Length: 47\r\n",
    b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n",
    b"Content-Length: 2, 47\r\n",
])
def test_an_ambiguous_body_length_is_refused_and_nothing_is_smuggled(limited, framing):
    smuggled = b"0\r\n\r\n" + STATUS_REQUEST  # would be a second request to a server using the other length
    answer = _exchange(limited.rest_port, b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\n" + framing +
                       b"\r\n{}" + smuggled)
    assert answer.startswith((b"HTTP/1.0 400 ", b"HTTP/1.1 400 ")), answer[:200]
    assert answer.count(b" 400 Bad Request") == 1 and b"AVAILABLE" not in answer, answer


def test_slowloris_headers_get_408_at_the_whole_request_deadline(limited):
    with socket.create_connection(("127.0.0.1", limited.rest_port), timeout=10) as sock:
        sock.sendall(b"GET /v1/models/tiny HTTP/1.1\r\n")
        start, sent = time.monotonic(), 0
        try:
            while time.monotonic() - start < 10 * DEADLINE:  # a header line every 0.2 s, never the end
                sock.sendall(f"X-Slow-{sent}: 1\r\n".encode())
                sent += 1
                time.sleep(0.2)
        except OSError:
            pass  # the server closed the connection
        answer = _answers(sock)
        elapsed = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408 ") and b"did not arrive within 1 s" in answer, answer
    assert elapsed < 8 * DEADLINE, elapsed  # closed near the deadline, not kept open by the trickle


def test_a_silent_connection_is_closed_with_408(limited):
    with socket.create_connection(("127.0.0.1", limited.rest_port), timeout=10) as sock:
        assert _answers(sock).startswith(b"HTTP/1.1 408 ")


def _flood(port, clients):
    """Opens `clients` connections at once, sends a status request on each; the answers' status lines."""
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(clients)]
    answers = [None] * clients

    def talk(index):
        try:
            sockets[index].sendall(STATUS_REQUEST.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
            answers[index] = _answers(sockets[index], timeout=30).split(b"\r\n", 1)[0]
        except OSError as e:
            answers[index] = repr(e).encode()
        finally:
            sockets[index].close()

    threads = [threading.Thread(target=talk, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_connections_beyond_the_limit_get_503_never_a_reset(limited):
    answers = _flood(limited.rest_port, 200)
    assert set(answers) <= {b"HTTP/1.1 200 OK", b"HTTP/1.1 503 Service Unavailable"}, set(answers)
    assert b"HTTP/1.1 503 Service Unavailable" in answers
    assert _exchange(limited.rest_port, STATUS_REQUEST.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
                     ).startswith(b"HTTP/1.1 200 ")  # the refused ones are gone


def test_two_hundred_simultaneous_clients_are_all_answered(server):  # noqa: F811 - the imported fixture
    assert set(_flood(server.rest_port, 200)) == {b"HTTP/1.1 200 OK"}


def test_too_many_header_lines_are_refused(limited):
    headers = b"".join(b"X-H-%d: 1\r\n" % i for i in range(200))
    answer = _exchange(limited.rest_port, b"GET /v1/models/tiny HTTP/1.1\r\n" + headers + b"\r\n")
    assert answer.startswith((b"HTTP/1.0 400 ", b"HTTP/1.1 400 ")) and b"Too many headers" in answer, answer[:300]


def _post(port, body: bytes):
    head = (f"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    answer = _exchange(port, head + body)
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]


@pytest.mark.parametrize("body, message", [
    (b'{"inputs": {"history": ' + b"[" * 2000 + b"]" * 2000 + b', "k": 1}}', "nested 2002 deep; at most 258"),
    (b'{"inputs": {"history": [["item1", "\\ud800"]], "k": 1}}',
     r"""'inputs'['history'][0][1]: the value "\ud800" holds a lone surrogate"""),
    (b'{"signature_name": "\\udfff", "inputs": {}}', "'signature_name': the value"),
    (b'{"inputs": {"history": [["item1"]], "k": ' + b"7" * 60000 + b"}}",
     "'inputs' input 'k': a 60000-digit integer is out of the range of int32"),
    (b'{"inputs": {"history": [["item1"]], "k": 2}, "\\ud800": 1}', "the key"),
    (b'{"inputs": {"history": [["item1", "\xed\xa0\x80"]], "k": 1}}', "not UTF-8 JSON"),
])
def test_hostile_json_gets_400_naming_the_field(limited, body, message):
    status, error = _post(limited.rest_port, body)
    assert status == 400 and message in error, (status, error)

