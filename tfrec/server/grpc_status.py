"""How a failure reaches a gRPC client (`grpc_status_util` in TF Serving): its canonical code and message.

`as_serving_error` maps any exception to the `ServingError` the client
receives, and `rpc` turns a blocking servicer method `method(self, request)`
into the `grpc.aio` method that runs it on the server's worker threads and
aborts the call with that code. `without_paths` cuts the absolute paths out
of every message a client receives (gRPC, REST, model status), so the
server's file layout stays in its own log.

Example:

>>> as_serving_error(ConfigError("bad model config"), "reload").code.name
'INVALID_ARGUMENT'
"""

import asyncio
import re

import grpc
from absl import logging

from tfrec.config import ConfigError
from tfrec.serving_errors import ServingError

_ABSOLUTE_PATH = re.compile(r"(?<![\w/:.~])/[^\s'\"]+")


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
        await context.abort(error.code, without_paths(error.message))

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


def without_paths(text: str) -> str:
    """`text` with each absolute path cut to its last two components, so the server's layout stays its own.

    Example:

    >>> without_paths("cannot load /srv/models/tiny/3: bad file")
    'cannot load .../tiny/3: bad file'
    """
    def shorten(match):
        path = match[0].rstrip(":,.;)")
        return ".../" + "/".join([part for part in path.split("/") if part][-2:]) + match[0][len(path):]

    return _ABSOLUTE_PATH.sub(shorten, text)
