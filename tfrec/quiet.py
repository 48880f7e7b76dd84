"""Quiet console output for the `python -m tfrec.*` commands.

TensorFlow prints dozens of lines nobody running these commands acts on: the
C++ log lines of its native libraries while they load (the CUDA driver probe
on a machine without a GPU, the oneDNN notice on Intel CPUs), grappler's
`Error in PredictCost()` and kernel warnings, and INFO records of its Python
logger while a SavedModel is written (signature input names "renamed to
unknown", "Assets written to ..."). A command calls `configure(__name__)`
first, before anything imports TensorFlow. Below `--verbosity=1` this

- sets `TF_CPP_MIN_LOG_LEVEL=3` (TensorFlow's C++ logs: fatal errors only)
  and `GRPC_VERBOSITY=ERROR`, which the processes the command starts inherit;
- drops, while `import tensorflow` runs, the lines of its native libraries no
  variable silences (absl's "All log messages before absl::InitializeLog()"
  notice, the CUDA driver probe, the oneDNN notice of Intel CPUs); any other
  line written meanwhile is kept;
- keeps only the warnings and errors of the `tensorflow` Python logger;
- prints tfrec's INFO logs without absl's `I1201 16:24:47.749199 ... file.py:147]`
  prefix.

`-v 1` (`--verbosity=1`) or more keeps every line (`TF_CPP_MIN_LOG_LEVEL=0`);
`-v -1` also hides tfrec's INFO logs. The level is read from the command line
(flagfiles included) before absl parses it: TensorFlow fixes its C++ log level
when it loads.

Example, at the top of an entry module:

    from tfrec import quiet

    quiet.configure(__name__)  # before TensorFlow is imported
"""

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile

from absl import app, flags
from absl import logging as absl_logging

# Written by TensorFlow's native libraries as they load, before any setting applies.
_LOAD_NOISE = re.compile(
    r"absl::InitializeLog\(\) is called"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers"
    r"|port\.cc:\d+\] oneDNN custom operations are on"
)


def command_line_verbosity(argv: list, default: int = 0) -> int:
    """The `--verbosity` (`-v`) `argv` gives, flagfiles included; `default` when it gives none or cannot be read.

    >>> command_line_verbosity(["tfrec.train", "--run_dir=x", "-v", "1"])
    1
    """
    values = flags.FlagValues()
    values.set_gnu_getopt(True)  # read past positional arguments
    flags.DEFINE_integer("verbosity", default, "absl logging verbosity", short_name="v", flag_values=values)
    try:
        values(list(argv), known_only=True)
    except flags.Error:
        return default  # the real parse reports it
    return values.verbosity


def configure(module_name: str, default_verbosity: int = 0) -> None:
    """Quiets TensorFlow for the command being run, unless `--verbosity` is 1 or more.

    Args:
        module_name: the calling module's `__name__`: anything but "__main__"
            (the module imported, not run as a command) changes nothing.
        default_verbosity: absl verbosity when the command line gives none: 0
            shows tfrec's INFO logs, -1 only warnings (commands that print
            their own report of what the library logs).
    """
    if module_name != "__main__":
        return
    verbosity = command_line_verbosity(sys.argv, default_verbosity)
    flags.FLAGS.set_default("showprefixforinfo", False)
    if default_verbosity:
        app.call_after_init(lambda: _default_verbosity(default_verbosity))
    if verbosity >= 1:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ["GRPC_VERBOSITY"] = "ERROR"
    logging.getLogger("tensorflow").addFilter(_warnings_and_errors)
    if "tensorflow" not in sys.modules:
        sys.meta_path.insert(0, _QuietTensorFlowImport())


def _default_verbosity(verbosity):
    """absl sets verbosity 0 when the command line gives none: use the command's default instead."""
    if not flags.FLAGS["verbosity"].present:
        absl_logging.set_verbosity(verbosity)


def _warnings_and_errors(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as the other finders do, and loads it with its load-time noise dropped (once)."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            load = spec.loader.exec_module

            def exec_module(module):
                with _load_noise_dropped():
                    load(module)

            spec.loader.exec_module = exec_module
        return spec


@contextlib.contextmanager
def _load_noise_dropped():
    """Points file descriptor 2 at a temporary file for the block, then writes back every line but the noise."""
    try:
        saved = os.dup(2)
    except OSError:  # no standard error to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not _LOAD_NOISE.search(line)))
            sys.stderr.flush()
