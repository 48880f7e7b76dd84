"""The error every serving component raises, client and server alike: a gRPC status code and a message.

The embedded server (`tfrec.server`) raises it and the client library
(`tfrec.client`, which re-exports it) raises what the server answers as it.

Example:

>>> import grpc
>>> from tfrec.serving_errors import ServingError
>>> err = ServingError(grpc.StatusCode.NOT_FOUND, "model 'x' is not served")
>>> err.code.name, str(err)
('NOT_FOUND', "NOT_FOUND: model 'x' is not served")
"""

import grpc


class ServingError(Exception):
    """A request failed with a TF Serving status code.

    Args:
        code: `grpc.StatusCode` of the failure (TF Serving's canonical codes:
            NOT_FOUND, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE...).
        message: what failed, naming the model, version, signature or input.
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def status_code_from_number(number: int) -> grpc.StatusCode:
    """Maps a canonical status number (TensorFlow's `error_code`) to a `grpc.StatusCode`."""
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code
    return grpc.StatusCode.UNKNOWN
