"""Which versions of which models are loaded, and the polling that changes it.

`ModelManager` follows TF Serving's model lifecycle: it scans each model's
`base_path` for version directories (names of ASCII digits holding a
`saved_model.pb`; anything else, such as a temporary directory being written,
is ignored), applies the model's `model_version_policy` (`latest {num_versions}`
(default 1), `all`, `specific {versions}`), loads and warms the aspired
versions it does not hold yet, and only then unloads the ones no longer
aspired (availability preserving: if no aspired version could be loaded, the
old one keeps serving). An unloading version leaves the routing table at once
but is released only after the requests running on it finish. A version that
failed to load is reported by `status` (GetModelStatus) as END with the error.

Where tfrec differs from TF Serving:

* Retries. TF Serving retries a failed load `max_num_load_retries` times,
  then never again. Here a failed version is retried on later polls up to
  `MAX_LOAD_ATTEMPTS` attempts, and afresh whenever its files change (their
  names, sizes or mtimes, see `version_fingerprint`): a version copied in
  without an atomic rename loads once the copy is complete, and one repaired
  in place loads on the next poll.
* `latest {num_versions}` skips broken versions. TF Serving aspires the N
  newest versions on disk even when they fail, so a corrupt newest version at
  startup leaves the model with nothing to serve. Here the N newest versions
  that load are aspired: the newest intact older version serves (at startup
  too) until the broken one loads.

Example:

>>> manager = ModelManager(config.read_model_server_config("models.config"))  # doctest: +SKIP
>>> manager.poll()                                                             # doctest: +SKIP
>>> with manager.acquire(request.model_spec) as servable:                      # doctest: +SKIP
...     outputs = servable.run("serving_default", request.inputs)
"""

import contextlib
import dataclasses
import os
import threading
from typing import Callable, Optional

import grpc
from absl import logging
from tensorflow_serving.apis import get_model_status_pb2

from tfrec import version_files
from tfrec.server import config as config_lib
from tfrec.server.servable import ServableVersion
from tfrec.serving_errors import ServingError

State = get_model_status_pb2.ModelVersionStatus.State

# A version whose load failed is retried on later polls up to this many attempts while its
# files stay the same; a change of its files starts the count afresh.
MAX_LOAD_ATTEMPTS = 3


@dataclasses.dataclass
class VersionState:
    """Lifecycle of one version: START/LOADING/AVAILABLE/UNLOADING/END (+ error)."""

    version: int
    state: int = State.START
    error: Optional[ServingError] = None
    servable: Optional[ServableVersion] = None
    in_flight: int = 0
    attempts: int = 0  # loads tried on the files of `fingerprint`
    fingerprint: tuple = ()  # `version_fingerprint` when the last load started


@dataclasses.dataclass
class ManagedModel:
    config: object  # tensorflow.serving.ModelConfig
    versions: dict = dataclasses.field(default_factory=dict)  # version -> VersionState
    warned_empty: bool = False


def versions_on_disk(base_path: str) -> list:
    """Sorted version numbers under `base_path`: directories named by a decimal
    integer in ASCII digits (no sign, no leading zero) holding a saved_model.pb."""
    try:
        names = os.listdir(base_path)
    except OSError:
        return []
    return sorted(
        int(name)
        for name in names
        if version_files.is_version_name(name) and os.path.isfile(os.path.join(base_path, name, "saved_model.pb"))
    )


def version_fingerprint(path: str) -> tuple:
    """(relative path, size, mtime and ctime in ns, inode) of every file under `path`, sorted: it changes
    when a file is written, added, removed, renamed or replaced (even by a copy keeping size and mtime)."""
    entries = []
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with contextlib.suppress(FileNotFoundError):  # removed while scanning: absent from the fingerprint
                info = os.stat(full)
                entries.append((os.path.relpath(full, path), info.st_size, info.st_mtime_ns, info.st_ctime_ns,
                                info.st_ino))
    return tuple(sorted(entries))


def version_candidates(model_config, found: list) -> tuple:
    """What the model's version policy asks of the versions `found` on disk.

    Returns:
        (candidates newest first, how many of them to serve: the first that
        load; for `all` and `specific`, every one).
    """
    policy = model_config.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    newest_first = sorted(found, reverse=True)
    if choice == "all":
        return newest_first, len(newest_first)
    if choice == "specific":
        wanted = set(policy.specific.versions)
        candidates = [v for v in newest_first if v in wanted]
        return candidates, len(candidates)
    return newest_first, policy.latest.num_versions if choice == "latest" and policy.latest.num_versions else 1


class ModelManager:
    """Loads, routes to and unloads model versions.

    Args:
        server_config: `tensorflow.serving.ModelServerConfig` (checked).
        on_change: called with (model_name, is_serving) after every poll and
            when a model is removed, e.g. to update the gRPC health status.
        scheduler: optional `batching.BatchScheduler` shared by every version.
        on_event: called with (model_name, version, event, success) after each
            version "load" (warm-up included) and "unload", e.g. to count them.
    """

    def __init__(
        self, server_config, on_change: Callable[[str, bool], None] = lambda name, serving: None, scheduler=None,
        on_event: Callable[[str, int, str, bool], None] = lambda name, version, event, success: None,
    ):
        self._scheduler = scheduler
        self._on_event = on_event
        self._cond = threading.Condition()
        self._poll_lock = threading.Lock()
        self._on_change = on_change
        self._models = {}
        self._stop = threading.Event()
        self._thread = None
        self._set_config(server_config)

    def _set_config(self, server_config):
        with self._cond:
            models = {}
            for model_config in server_config.model_config_list.config:
                managed = self._models.get(model_config.name) or ManagedModel(model_config)
                managed.config = model_config
                models[model_config.name] = managed
            removed = [m for name, m in self._models.items() if name not in models]
            self._models = models
        for managed in removed:
            for state in list(managed.versions.values()):
                if state.state == State.AVAILABLE:
                    self._unload(managed.config.name, state)
            self._on_change(managed.config.name, False)

    @property
    def model_names(self) -> list:
        with self._cond:
            return sorted(self._models)

    def start(self, poll_wait_seconds: float) -> None:
        """Polls once now, then every `poll_wait_seconds` (0: only once) in a daemon thread."""

        def loop():
            while not self._stop.is_set():
                try:
                    self.poll()
                except Exception:  # noqa: BLE001 - keep serving and polling; the traceback is logged
                    logging.exception("Polling the model base paths failed")
                if poll_wait_seconds <= 0 or self._stop.wait(poll_wait_seconds):
                    return

        self._thread = threading.Thread(target=loop, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops polling and unloads every version (after in-flight requests)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._poll_lock:
            for name, managed in list(self._models.items()):
                for state in list(managed.versions.values()):
                    if state.state == State.AVAILABLE:
                        self._unload(name, state)

    def reload(self, server_config) -> None:
        """Replaces the served model list (a `HandleReloadConfigRequest`) and polls.

        Raises:
            ConfigError: the new config is invalid (nothing changes).
        """
        config_lib.check_model_server_config(server_config, source="ReloadConfigRequest")
        with self._poll_lock:
            self._set_config(server_config)
        self.poll()

    def poll(self) -> None:
        """Scans every model's base path once and loads/unloads to match its policy."""
        with self._poll_lock:
            with self._cond:
                models = list(self._models.values())
            for managed in models:
                if self._stop.is_set():
                    return
                self._poll_model(managed)
                self._on_change(managed.config.name, self._has_available(managed))

    def _has_available(self, managed):
        with self._cond:
            return any(s.state == State.AVAILABLE for s in managed.versions.values())

    def _poll_model(self, managed):
        name, base_path = managed.config.name, managed.config.base_path
        found = versions_on_disk(base_path)
        if not found and not managed.warned_empty:
            logging.warning("No versions of model %r found under base path %s", name, base_path)
        managed.warned_empty = not found
        candidates, wanted = version_candidates(managed.config, found)
        served = []
        for version in candidates:
            if len(served) == wanted:
                break
            with self._cond:
                state = managed.versions.setdefault(version, VersionState(version))
            if self._ensure_loaded(name, os.path.join(base_path, str(version)), state):
                served.append(version)
        with self._cond:
            to_unload = [s for v, s in managed.versions.items() if s.state == State.AVAILABLE and v not in served]
        if served:
            for state in to_unload:
                self._unload(name, state)

    def _ensure_loaded(self, name, path, state):
        """Loads `state`'s version unless it is available or failed on these very files
        `MAX_LOAD_ATTEMPTS` times (an available version whose files changed is loaded again,
        `_reload`); returns whether it is available."""
        fingerprint = version_fingerprint(path)
        with self._cond:
            available, changed = state.state == State.AVAILABLE, fingerprint != state.fingerprint
            if available:
                state.fingerprint = fingerprint
        if available:
            if changed:
                self._reload(name, path, state)
            return True
        with self._cond:
            if state.error is None or fingerprint != state.fingerprint:
                state.attempts = 0  # never loaded, unloaded by policy earlier, or its files changed since it failed
            elif state.attempts >= MAX_LOAD_ATTEMPTS:
                return False
            state.state, state.fingerprint, state.attempts = State.LOADING, fingerprint, state.attempts + 1
        logging.info("Loading model %r version %d from %s", name, state.version, path)
        try:
            servable = ServableVersion.load(name, state.version, path, self._scheduler)
        except ServingError as e:
            logging.error(
                "Failed to load model %r version %d (attempt %d of %d on these files; retried afresh when they "
                "change): %s", name, state.version, state.attempts, MAX_LOAD_ATTEMPTS, e.message,
            )
            with self._cond:
                state.state, state.error = State.END, e
            self._on_event(name, state.version, "load", False)
            return False
        with self._cond:
            state.state, state.error, state.servable = State.AVAILABLE, None, servable
        self._on_event(name, state.version, "load", True)
        logging.info(
            "Successfully loaded model %r version %d (%d warm-up requests replayed; now available)",
            name, state.version, servable.warmup_requests,
        )
        return True

    def _reload(self, name, path, state):
        """Loads the changed files of available version `state` and swaps them in; on failure the loaded
        model keeps serving. Requests running on the old servable finish on it."""
        logging.warning("The files of model %r version %d changed on disk since it loaded (replaced in place?): "
                        "loading them again; the model loaded before serves meanwhile", name, state.version)
        try:
            servable = ServableVersion.load(name, state.version, path, self._scheduler)
        except ServingError as e:
            logging.error("Failed to load the changed files of model %r version %d; the model loaded before keeps "
                          "serving (retried when the files change again): %s", name, state.version, e.message)
            self._on_event(name, state.version, "load", False)
            return
        with self._cond:
            state.servable = servable
        self._on_event(name, state.version, "load", True)
        logging.info("Reloaded model %r version %d from its changed files (%d warm-up requests replayed)",
                     name, state.version, servable.warmup_requests)

    def _unload(self, name, state):
        with self._cond:
            state.state = State.UNLOADING
            logging.info("Unloading model %r version %d", name, state.version)
            self._cond.wait_for(lambda: state.in_flight == 0)
            state.state, state.servable = State.END, None
        logging.info("Done unloading model %r version %d", name, state.version)
        self._on_event(name, state.version, "unload", True)

    @contextlib.contextmanager
    def acquire(self, model_spec):
        """Pins the version `model_spec` asks for while the block runs.

        Args:
            model_spec: `tensorflow.serving.ModelSpec` (name; version or
                version_label or neither for the latest available version).

        Yields:
            The `ServableVersion`; it is not released before the block exits.

        Raises:
            ServingError: NOT_FOUND for an unknown model, version or label;
                UNAVAILABLE while a served model has no version loaded yet.
        """
        with self._cond:
            state = self._resolve(model_spec)
            state.in_flight += 1
            servable = state.servable
        try:
            yield servable
        finally:
            with self._cond:
                state.in_flight -= 1
                if state.in_flight == 0:
                    self._cond.notify_all()

    def _resolve(self, spec):
        managed = self._models.get(spec.name)
        if managed is None:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"model {spec.name!r} is not served; served models are {sorted(self._models)}",
            )
        available = sorted(v for v, s in managed.versions.items() if s.state == State.AVAILABLE)
        choice = spec.WhichOneof("version_choice")
        if choice == "version_label":
            labels = managed.config.version_labels
            if spec.version_label not in labels:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND,
                    f"model {spec.name!r} has no version label {spec.version_label!r}; labels are {sorted(labels)}",
                )
            wanted = labels[spec.version_label]
            what = f"version {wanted} (label {spec.version_label!r})"
        elif choice == "version":
            wanted, what = spec.version.value, f"version {spec.version.value}"
        elif available:
            return managed.versions[available[-1]]
        else:
            raise ServingError(
                grpc.StatusCode.UNAVAILABLE,
                f"model {spec.name!r} has no version available yet (the server's log names its base path and "
                "each version's state)",
            )
        if wanted not in available:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"model {spec.name!r} {what} is not available; available versions are {available}",
            )
        return managed.versions[wanted]

    def status(self, name: str, version: Optional[int] = None) -> list:
        """`VersionState`s of model `name` (one version or all), newest first.

        Raises:
            ServingError: NOT_FOUND for an unknown model or version.
        """
        with self._cond:
            managed = self._models.get(name)
            if managed is None:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND, f"model {name!r} is not served; served models are {sorted(self._models)}"
                )
            states = [dataclasses.replace(s) for v, s in sorted(managed.versions.items(), reverse=True)]
        if version is not None:
            states = [s for s in states if s.version == version]
            if not states:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"model {name!r} has no version {version}")
        return states
