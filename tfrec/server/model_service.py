"""`tensorflow.serving.ModelService` (`model_service_impl` in TF Serving): model status and config reload.

`ModelService.model_status` also answers the REST API's model status route;
the load errors it reports have their absolute paths cut to the last two
components (`without_paths`), so the server's file layout stays in its log.
`HandleReloadConfigRequest` is refused unless the server allows it, and then
accepts only base paths inside its `model_root` (a SavedModel is code).

Example:

>>> ModelService(manager).model_status(model_pb2.ModelSpec(name="tiny"))  # doctest: +SKIP
"""

import os
import re
from typing import Optional

import grpc
from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2, model_service_pb2_grpc

from tfrec.server import config as config_lib
from tfrec.server.grpc_status import rpc
from tfrec.server.model_manager import ModelManager
from tfrec.serving_errors import ServingError


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """`tensorflow.serving.ModelService` over a `ModelManager`."""

    def __init__(self, manager: ModelManager, allow_config_reload: bool = False, model_root: Optional[str] = None):
        self._manager = manager
        self._allow_config_reload = allow_config_reload
        self._model_root = os.path.realpath(model_root) if model_root else None

    def model_status(self, model_spec) -> get_model_status_pb2.GetModelStatusResponse:
        """Status of the versions `model_spec` names (all, one version, or the one a label points to).

        Raises:
            ServingError: NOT_FOUND for an unknown model or version, or a
                label whose version is not available.
        """
        choice = model_spec.WhichOneof("version_choice")
        version = model_spec.version.value if choice == "version" else None
        if choice == "version_label":
            with self._manager.acquire(model_spec) as servable:  # resolves the label
                version = servable.version
        response = get_model_status_pb2.GetModelStatusResponse()
        for state in self._manager.status(model_spec.name, version):
            status = response.model_version_status.add(version=state.version, state=state.state)
            status.status.SetInParent()  # error_code OK, as TF Serving reports it
            if state.error is not None:
                status.status.error_code = state.error.code.value[0]
                status.status.error_message = without_paths(state.error.message)
        return response

    @rpc
    def GetModelStatus(self, request):
        return self.model_status(request.model_spec)

    @rpc
    def HandleReloadConfigRequest(self, request):
        if not self._allow_config_reload:
            raise ServingError(grpc.StatusCode.PERMISSION_DENIED,
                               "config reload over RPC is off: the operator starts the server with "
                               "--allow_config_reload and --model_root to allow it")
        config_lib.check_model_server_config(request.config, source="ReloadConfigRequest")
        resolved = type(request.config)()
        resolved.CopyFrom(request.config)
        for index, model in enumerate(resolved.model_config_list.config):
            path = os.path.realpath(model.base_path)
            if os.path.commonpath([path, self._model_root]) != self._model_root:
                raise ServingError(grpc.StatusCode.PERMISSION_DENIED,
                                   f"config[{index}] (name {model.name!r}): base_path {model.base_path!r} is "
                                   f"outside the server's --model_root {self._model_root!r}")
            model.base_path = path  # the checked path, not a link that could be swapped afterwards
        self._manager.reload(resolved)
        return model_management_pb2.ReloadConfigResponse()


_ABSOLUTE_PATH = re.compile(r"(?<![\w/:.~])/[^\s'\"]+")


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
