"""What the benchmark scripts share: the machine line and BENCHMARKS.md sections.

Each script owns one section of BENCHMARKS.md between `<!-- NAME -->` and
`<!-- /NAME -->` markers and replaces only that section, atomically.

Example:

>>> import benchlib
>>> benchlib.write_section("BENCHMARKS.md", "bench_data", "## Data pipeline\\n...")  # doctest: +SKIP
"""

import os
import platform


def machine():
    """One line: CPU model, cores, Python and TensorFlow versions, 1-min load average."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import tensorflow as tf

    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, TensorFlow {tf.__version__}, "
        f"load average {os.getloadavg()[0]:.1f} (cores shared with other jobs)"
    )


def train_configs(*args):
    """The validated (DataConfig, ModelConfig, TrainConfig) of `python -m tfrec.train` flags `args`."""
    from absl import flags

    from tfrec import train

    values = flags.FlagValues()
    train.define_flags(values)
    values(["bench", *args])
    return train.configs_from_flags(values)


def write_atomic(path, text):
    """Writes `text` to a temporary file beside `path` (creating its directory), then renames it over `path`."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, "w") as f:
        f.write(text)
    os.replace(temp, path)


def write_section(path, name, body):
    """Replaces the `name` section of the markdown file `path` with `body` (appends it if absent)."""
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    section = f"{begin}\n{body.strip()}\n{end}"
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    write_atomic(path, text)
