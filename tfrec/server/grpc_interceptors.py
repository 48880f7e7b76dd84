"""The gRPC server interceptors: the bearer-token check, and the bound on waiting for a request message (which
is parsed there too, so a message that does not parse is INVALID_ARGUMENT rather than gRPC's UNKNOWN).

Example:

>>> interceptors = [ReadTimeout(30.0), BearerToken("s3cret")]  # doctest: +SKIP
>>> grpc.aio.server(interceptors=interceptors)                   # doctest: +SKIP
"""

import asyncio
import hmac

import grpc
from google.protobuf.message import DecodeError


class BearerToken(grpc.aio.ServerInterceptor):
    """Refuses every RPC but the health check without `authorization: Bearer <token>`."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

        async def deny(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing or wrong bearer token (metadata 'authorization: Bearer <token>')")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    async def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith("/grpc.health.v1.Health/"):
            return await continuation(handler_call_details)
        given = dict(handler_call_details.invocation_metadata).get("authorization", "")
        if hmac.compare_digest(given.encode() if isinstance(given, str) else given, self._expected):
            return await continuation(handler_call_details)
        return self._deny


class ReadTimeout(grpc.aio.ServerInterceptor):
    """Bounds how long a unary-request call waits for its message.

    gRPC receives a unary request before the method runs, with no limit; this
    serves such a method as request-streaming instead, reads the one message
    itself, and ends the call with DEADLINE_EXCEEDED when it does not arrive
    within `seconds`, INVALID_ARGUMENT when its bytes do not parse as the
    method's request message.
    """

    def __init__(self, seconds: float):
        self._seconds = seconds
        self._wrapped = {}  # (method, handler) -> its request-streaming handler, built once

    async def _read(self, context, method, deserialize):
        try:
            async with asyncio.timeout(self._seconds):  # no task of its own, unlike wait_for
                request = await context.read()
        except TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"{method}: no request message within {self._seconds:g} s "
                                "(the server's grpc_read_timeout_seconds)")
        if request is grpc.aio.EOF:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{method}: the call ended without a request message")
        if deserialize is None:
            return request
        try:
            return deserialize(request)
        except DecodeError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"{method}: the request's {len(request)} bytes are not a valid request message ({e})")

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler
        key = (handler_call_details.method, handler)
        if key not in self._wrapped:
            self._wrapped[key] = self._request_streaming(handler, handler_call_details.method)
        return self._wrapped[key]

    def _request_streaming(self, handler, method):
        """`handler` served as request-streaming, its one message read by `_read`."""
        deserialize = handler.request_deserializer  # applied in _read: the transport passes the raw bytes
        if handler.response_streaming:
            async def stream(requests, context):
                await handler.unary_stream(await self._read(context, method, deserialize), context)

            return grpc.stream_stream_rpc_method_handler(stream, None, handler.response_serializer)

        async def unary(requests, context):
            return await handler.unary_unary(await self._read(context, method, deserialize), context)

        return grpc.stream_unary_rpc_method_handler(unary, None, handler.response_serializer)
