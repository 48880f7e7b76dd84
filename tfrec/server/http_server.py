"""The HTTP transport of the REST API: connections, bodies, TLS, and TF Serving's HTTP status of each error.

`HttpServer` accepts connections (a daemon thread each, with a socket
timeout; TLS negotiated in that thread) and hands each request to its `api`
(`rest.RestApiServer`): `api.route(path)` names the method, whether a token
is needed and the handler, `api.call` runs it. A `ServingError` is answered
`{"error": message}` with the HTTP status TF Serving gives its canonical code
(`HTTP_STATUS`), an `HttpError` with its own status; a body is read only up
to `max_message_bytes` and within `read_timeout_seconds`.

Example:

>>> HTTP_STATUS[grpc.StatusCode.NOT_FOUND], HTTP_STATUS[grpc.StatusCode.RESOURCE_EXHAUSTED]
(404, 429)
"""

import http.server
import json
import socketserver
import ssl
import time

import grpc
from absl import logging

from tfrec.config import ConfigError
from tfrec.serving_errors import ServingError

JSON = "application/json"
# A refused body is read and dropped (so the client can read the answer) up to this multiple of the limit.
_DRAIN_LIMIT_FACTOR = 4

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


def ssl_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    """A server-side TLS context from PEM files; ConfigError naming the pair that cannot be used."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"ssl_cert={cert_path!r}, ssl_key={key_path!r}: cannot load them for the REST port "
                          f"({e})") from None
    return context


class HttpError(Exception):
    """An HTTP-level refusal (no canonical code stands for it)."""

    def __init__(self, status, message, headers=()):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers)


class _Handler(http.server.BaseHTTPRequestHandler):
    """One connection: routes each request to the `RestApiServer` (`self.server.api`)."""

    protocol_version = "HTTP/1.1"
    _unread = 0  # request body bytes not read yet

    def version_string(self):
        return "tfrec-serving"

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        logging.debug("REST %s: " + format, self.address_string(), *args)

    def send_error(self, code, message=None, explain=None):
        """The stdlib's own refusals (malformed request line, header too long...), as JSON."""
        self._send(code, {"error": message or explain or self.responses.get(code, ("error",))[0]})

    def _handle(self):
        api = self.server.api
        path = self.path.split("?", 1)[0]
        try:
            self._unread = self._content_length()
            allowed, needs_token, handler, match = api.route(path)
            if self.command != allowed:
                raise HttpError(405, f"{self.command} {path}: this route takes {allowed}", {"Allow": allowed})
            if needs_token:
                api.check_token(self.headers.get("Authorization", ""))
            body = self._read_body(api) if self.command == "POST" else b""
            status, payload, content_type = api.call(handler, match, body, self.headers)
            self._send(status, payload, content_type)
        except HttpError as e:
            self._send(e.status, {"error": e.message}, headers=e.headers)
        except ServingError as e:
            headers = {"WWW-Authenticate": "Bearer"} if e.code == grpc.StatusCode.UNAUTHENTICATED else {}
            self._send(HTTP_STATUS.get(e.code, 500), {"error": e.message}, headers=headers)
        except Exception as e:  # noqa: BLE001 - any other failure is a 500, with the traceback logged
            logging.exception("REST %s %s failed", self.command, path)
            self._send(500, {"error": f"{self.command} {path} failed: {type(e).__name__}: {e}"})
        self._drain(api)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    def _content_length(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True  # the body's end is unknown
            raise HttpError(411, "chunked request bodies are not accepted; send a Content-Length header")
        text = self.headers.get("Content-Length")
        if text is None:
            return 0
        if not (text.isascii() and text.isdigit()):
            self.close_connection = True
            raise HttpError(400, f"Content-Length {text!r} is not a byte count")
        return int(text)

    def _read_body(self, api):
        length, limit = self._unread, api.max_message_bytes
        if "Content-Length" not in self.headers:
            raise HttpError(411, f"{self.command} needs a Content-Length header")
        if length > limit:
            raise HttpError(413, f"the request body is {length} bytes, more than the server's "
                                  f"max_message_bytes={limit}")
        chunks, deadline = [], time.monotonic() + api.read_timeout_seconds
        try:
            while self._unread:
                if time.monotonic() > deadline:
                    raise TimeoutError
                chunk = self.rfile.read1(min(self._unread, 1 << 16))
                if not chunk:
                    raise HttpError(400, f"the request body ended after {length - self._unread} of its "
                                          f"{length} bytes")
                chunks.append(chunk)
                self._unread -= len(chunk)
        except TimeoutError:
            self.close_connection = True
            raise HttpError(408, f"the request body did not arrive within {api.read_timeout_seconds:g} s") from None
        return b"".join(chunks)

    def _send(self, status, payload, content_type=JSON, headers=()):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in dict(headers).items():
                self.send_header(key, value)
            if self._unread or self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            self.wfile.flush()
        except OSError as e:  # the client went away
            logging.debug("REST %s: cannot send the answer: %s", self.address_string(), e)
            self.close_connection = True

    def _drain(self, api):
        """Reads and drops an unread body (bounded), so a client still sending it can read the answer."""
        left = self._unread if self._unread <= _DRAIN_LIMIT_FACTOR * api.max_message_bytes else 0
        deadline = time.monotonic() + api.read_timeout_seconds
        try:
            while left > 0 and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass
        self._unread = 0


class HttpServer(http.server.ThreadingHTTPServer):
    """A (daemon) thread per connection, each with a socket timeout, TLS negotiated in that thread."""

    def __init__(self, address, family, api, context):
        self.address_family = family
        self.api, self._context = api, context
        super().__init__(address, _Handler)

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)  # without HTTPServer's reverse DNS lookup of the host

    def finish_request(self, request, client_address):
        request.settimeout(self.api.read_timeout_seconds)
        if self._context is None:
            super().finish_request(request, client_address)
            return
        with self._context.wrap_socket(request, server_side=True) as tls:
            super().finish_request(tls, client_address)

    def handle_error(self, request, client_address):
        logging.debug("REST connection from %s failed", client_address, exc_info=True)
