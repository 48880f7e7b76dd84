"""The HTTP transport of the REST API: aiohttp on the server's event loop, with limits on every connection.

`HttpServer` listens on a socket bound beforehand and hands each request to
its `api` (`rest.RestApiServer`): `api.route(path)` names the method, whether
a token is needed and the handler; `api.call` runs it on a thread pool (JSON
decoding and model work never block the event loop, which also runs the
gRPC port). A `ServingError` is answered `{"error": message}` with the HTTP
status TF Serving gives its canonical code (`HTTP_STATUS`), an `HttpError`
with its own status. The limits:

* a whole-request deadline (`request_deadline_seconds`): request line,
  headers and body must all arrive within it, counted from the request's
  first byte (or from the connection's start), else 408 and the connection
  closes; an idle keep-alive connection closes after twice it;
* at most `MAX_HEADERS` header lines of `MAX_HEADER_BYTES` each, and a body of
  at most `max_message_bytes` (413);
* the request parser refuses an ambiguous body length (two Content-Length
  headers, or Content-Length with Transfer-Encoding) with 400;
* a listen backlog of `backlog` connections, and beyond `max_connections`
  open connections a new one is answered 503 and closed (never reset).

Example:

>>> HTTP_STATUS[grpc.StatusCode.NOT_FOUND], HTTP_STATUS[grpc.StatusCode.RESOURCE_EXHAUSTED]
(404, 429)
"""

import asyncio
import json
import socket
import ssl
from concurrent import futures
from typing import Optional

import grpc
from absl import logging
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from tfrec.config import ConfigError
from tfrec.serving_errors import ServingError

JSON = "application/json"
MAX_HEADERS = 64
MAX_HEADER_BYTES = 8190
SERVER_NAME = "tfrec-serving"
_LINGER_SECONDS = 2.0  # how long a refused connection's bytes are read and dropped before the close

# TF Serving's HTTP status for each canonical code (model_servers/http_server.cc).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409, grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500, grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
_REASONS = {400: "Bad Request", 408: "Request Timeout", 503: "Service Unavailable"}


def ssl_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    """A server-side TLS context from PEM files; ConfigError naming the pair that cannot be used."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"ssl_cert={cert_path!r}, ssl_key={key_path!r}: cannot load them for the REST port "
                          f"({e})") from None
    return context


def bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (not listening yet); OSError naming the address."""
    bind_host = host.strip("[]")
    try:
        family = socket.getaddrinfo(bind_host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((bind_host, port))
        except OSError:
            sock.close()
            raise
    except OSError as e:
        raise OSError(f"cannot listen on {host}:{port} for the REST API: {e}") from e
    return sock


def raw_response(status: int, message: str) -> bytes:
    """A complete `Connection: close` HTTP/1.1 answer `{"error": message}`, for a connection no handler owns."""
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nServer: {SERVER_NAME}\r\n"
            f"Content-Type: {JSON}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def answer_and_close(transport: asyncio.Transport, answer: bytes, linger_seconds: float) -> None:
    """Writes `answer`, half-closes, and closes `linger_seconds` later: closing at once with the client's bytes
    unread would reset the connection, and the client could lose the answer."""
    transport.write(answer)
    if transport.can_write_eof():
        transport.write_eof()
    asyncio.get_running_loop().call_later(linger_seconds, transport.close)


class HttpError(Exception):
    """An HTTP-level refusal (no canonical code stands for it)."""

    def __init__(self, status, message, headers=()):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers)


class _Connection(RequestHandler):
    """aiohttp's connection protocol with a deadline on each request's arrival (headers and body).

    The deadline starts at the connection's start and at the first byte after
    each answer; `request_started` (called by the handler once the headers are
    in) stops the timer and tells the time left for the body.
    """

    def __init__(self, manager, *, deadline_seconds: float, **kwargs):
        super().__init__(manager, **kwargs)
        self._deadline_seconds = deadline_seconds
        self._deadline = 0.0
        self._timer = None
        self._busy = False
        self._expired = False

    def _arm(self):
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self._deadline_seconds
        self._timer = loop.call_at(self._deadline, self._expire)

    def _expire(self):
        self._timer = None
        if self.transport is not None and not self._busy:
            self._expired = True
            answer_and_close(self.transport, raw_response(408, f"the request did not arrive within "
                                                               f"{self._deadline_seconds:g} s"), _LINGER_SECONDS)

    def connection_made(self, transport):
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._expired:
            return  # dropped until the close
        if self._timer is None and not self._busy:
            self._arm()
        super().data_received(data)

    def connection_lost(self, exc):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def request_started(self) -> float:
        """Stops the header timer; returns the seconds left for the body."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._busy = True
        return max(self._deadline - asyncio.get_running_loop().time(), 0.0)

    def request_finished(self) -> None:
        self._busy = False

    def handle_error(self, request, status=500, exc=None, message=None):
        """aiohttp's own refusals (malformed request line, duplicate Content-Length...), as JSON."""
        if status >= 500:
            logging.warning("REST request from %s failed: %r", request.remote, exc)
            message = "internal error"
        message = (message or _REASONS.get(status, "error")).split("\n", 1)[0].rstrip(":")  # without the caret art
        response = web.Response(body=json.dumps({"error": message}).encode(), status=status,
                                headers={"Content-Type": JSON, "Server": SERVER_NAME})
        response.force_close()
        return response


class _Refusal(asyncio.Protocol):
    """A connection beyond the limit: answered 503, its request read and dropped until the client closes."""

    def __init__(self, message: str):
        self._message = message

    def connection_made(self, transport):
        answer_and_close(transport, raw_response(503, self._message), _LINGER_SECONDS)

    def data_received(self, data):
        pass  # dropped: closing with unread bytes would reset the connection before the client reads the answer

    def eof_received(self):
        return False  # closes


class HttpServer:
    """aiohttp serving `api` on an already bound socket, on the running event loop (see the module docstring).

    Args:
        api: the `rest.RestApiServer` (`route`, `check_token`, `call`,
            `max_message_bytes`).
        sock: the bound socket (`bound_socket`).
        context: `ssl.SSLContext` for HTTPS, or None.
        executor: thread pool running `api.call`.
        request_deadline_seconds, max_connections, backlog: see the module docstring.
    """

    def __init__(self, api, sock: socket.socket, context: Optional[ssl.SSLContext], executor: futures.Executor, *,
                 request_deadline_seconds: float, max_connections: int, backlog: int):
        self._api, self._sock, self._context, self._executor = api, sock, context, executor
        self._deadline = request_deadline_seconds
        self._max_connections, self._backlog = max_connections, backlog
        self._server = self._listener = None

    def _protocol(self):
        if len(self._server.connections) >= self._max_connections:
            return _Refusal(f"more than max_connections={self._max_connections} open connections; retry later")
        return _Connection(self._server, loop=asyncio.get_running_loop(), deadline_seconds=self._deadline,
                           keepalive_timeout=2 * self._deadline, lingering_time=self._deadline, access_log=None,
                           max_headers=MAX_HEADERS, max_line_size=MAX_HEADER_BYTES, max_field_size=MAX_HEADER_BYTES)

    async def start(self) -> None:
        """Starts listening (on the running loop)."""
        self._server = web.Server(self._handle)
        self._listener = await asyncio.get_running_loop().create_server(
            self._protocol, sock=self._sock, backlog=self._backlog, ssl=self._context,
            ssl_handshake_timeout=self._deadline if self._context else None)

    async def stop(self, grace_seconds: float) -> None:
        """Stops listening, then closes the connections (waiting up to `grace_seconds` for running requests)."""
        if self._listener is not None:
            self._listener.close()
            await self._server.shutdown(grace_seconds)
        else:
            self._sock.close()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        connection = request.protocol
        time_left = connection.request_started()
        path = request.raw_path.split("?", 1)[0]
        try:
            status, payload, content_type = await self._answer(request, path, time_left)
            headers = {}
        except HttpError as e:
            status, payload, content_type, headers = e.status, {"error": e.message}, JSON, e.headers
        except ServingError as e:
            headers = {"WWW-Authenticate": "Bearer"} if e.code == grpc.StatusCode.UNAUTHENTICATED else {}
            status, payload, content_type = HTTP_STATUS.get(e.code, 500), {"error": e.message}, JSON
        except Exception as e:  # noqa: BLE001 - any other failure is a 500, with the traceback logged
            logging.exception("REST %s %s failed", request.method, path)
            status, payload, content_type, headers = 500, {"error": f"{request.method} {path} failed: "
                                                                    f"{type(e).__name__}"}, JSON, {}
        finally:
            connection.request_finished()
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        response = web.Response(body=data, status=status,
                                headers={**headers, "Content-Type": content_type, "Server": SERVER_NAME})
        if status == 408 or (status == 413 and request.content_length is None):
            response.force_close()  # the rest of the body cannot be skipped
        return response

    async def _answer(self, request, path, time_left):
        api = self._api
        allowed, needs_token, handler, match = api.route(path)
        if request.method != allowed:
            raise HttpError(405, f"{request.method} {path}: this route takes {allowed}", {"Allow": allowed})
        if needs_token:
            api.check_token(request.headers.get("Authorization", ""))
        body = b""
        if request.method == "POST":
            try:
                body = await asyncio.wait_for(self._read_body(request), time_left)
            except asyncio.TimeoutError:
                raise HttpError(408, f"the request body did not arrive within {self._deadline:g} s") from None
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, api.call, handler, match, body, request.headers)

    async def _read_body(self, request) -> bytes:
        limit, length = self._api.max_message_bytes, request.content_length
        if length is None and "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
            raise HttpError(411, f"{request.method} needs a Content-Length header")
        if length is not None and length > limit:
            raise HttpError(413, f"the request body is {length} bytes, more than the server's "
                                  f"max_message_bytes={limit}")
        chunks, size = [], 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise HttpError(413, f"the request body is more than the server's max_message_bytes={limit}")
            chunks.append(chunk)
        if length is not None and size < length:
            raise HttpError(400, f"the request body ended after {size} of its {length} bytes")
        return b"".join(chunks)
