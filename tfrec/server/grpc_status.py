"""How a failure reaches a gRPC client (`grpc_status_util` in TF Serving): its canonical code and message.

`as_serving_error` maps any exception to the `ServingError` the client
receives, and `rpc` turns a blocking servicer method `method(self, request)`
into the `grpc.aio` method that runs it on the server's worker threads and
aborts the call with that code.

Example:

>>> as_serving_error(ConfigError("bad model config"), "reload").code.name
'INVALID_ARGUMENT'
"""

import asyncio

import grpc
from absl import logging

from tfrec.config import ConfigError
from tfrec.serving_errors import ServingError


def as_serving_error(error: Exception, what: str) -> ServingError:
    """`error` as the `ServingError` a client receives: itself, INVALID_ARGUMENT for a
    `ConfigError`, else INTERNAL naming `what` failed (with the traceback logged)."""
    if isinstance(error, ServingError):
        return error
    if isinstance(error, ConfigError):
        return ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(error))
    logging.error("%s failed", what, exc_info=error)
    return ServingError(grpc.StatusCode.INTERNAL, f"{what} failed: {type(error).__name__}: {error}")


def rpc(method):
    """The gRPC method for `method(self, request)`: a coroutine running it on the event loop's
    executor (`Server`'s `max_workers` threads), aborting the call with the canonical code of any failure."""

    async def wrapper(self, request, context):
        try:
            return await asyncio.get_running_loop().run_in_executor(None, method, self, request)
        except Exception as e:  # noqa: BLE001 - every failure reaches the client with its canonical code
            error = as_serving_error(e, method.__name__)
        await context.abort(error.code, bounded(error.message))

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


MAX_MESSAGE_BYTES = 2048  # of an error message: gRPC percent-encodes it into a trailer clients cap at 16 KiB


def bounded(message: str) -> str:
    """`message` cut to at most `MAX_MESSAGE_BYTES` of UTF-8, saying how much was cut: an error that
    echoes a client's ids must still fit the gRPC trailer, or the client sees RESOURCE_EXHAUSTED instead.

    >>> bounded("unknown item ids: " + "x" * 5000)[-32:]
    'xx... (3034 more characters cut)'
    """
    if len(message.encode("utf-8")) <= MAX_MESSAGE_BYTES:
        return message
    head = message.encode("utf-8")[:MAX_MESSAGE_BYTES - 64].decode("utf-8", "ignore")
    return f"{head}... ({len(message) - len(head)} more characters cut)"
