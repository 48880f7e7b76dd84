"""Devices and the `tf.distribute` strategy a training run uses.

`TrainConfig.strategy="auto"` picks `MirroredStrategy` over every visible GPU when there
is at least one, and a `OneDeviceStrategy` on the CPU otherwise.
`TrainConfig.cpu_replicas=N` splits the CPU into N logical devices and mirrors over
them, so multi-replica training can be exercised on a machine without GPUs.
`TrainConfig.strategy="multi_worker"` is `MultiWorkerMirroredStrategy` over the
cluster of the `TF_CONFIG` environment variable (`tfrec.launch` sets it for
workers on this machine; `docs/distributed.md`).

Example:

>>> from tfrec.training import devices
>>> devices.configure_cpu_replicas(2)  # before anything touches the devices
>>> strategy = devices.make_strategy("auto", cpu_replicas=2)
>>> strategy.num_replicas_in_sync
2
"""

import json
import os

import tensorflow as tf

from tfrec.config import ConfigError

STRATEGIES = ("auto", "mirrored", "one_device", "multi_worker")
TF_CONFIG = "TF_CONFIG"
TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host0:2222", "host1:2222"]}, '
                     '"task": {"type": "worker", "index": 0}}')


class DeviceError(ConfigError):
    """The requested device layout cannot be set up in this process."""


def configure_cpu_replicas(num_replicas):
    """Splits the physical CPU into `num_replicas` logical devices.

    Must run before TensorFlow initialises its devices. Calling it again with a
    number of logical CPUs the process already has (or fewer) is a no-op, so
    in-process callers (tests, notebooks) may call it repeatedly.

    Args:
        num_replicas: int >= 1. 1 leaves the CPU as it is.

    Raises:
        DeviceError: the devices were already initialised with another layout.
    """
    if num_replicas < 1:
        raise DeviceError(f"TrainConfig.cpu_replicas={num_replicas}: expected a value >= 1")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if num_replicas <= (len(current) if current else 1):
        return
    wanted = [tf.config.LogicalDeviceConfiguration()] * num_replicas
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError as error:
        have = len(tf.config.list_logical_devices("CPU"))
        raise DeviceError(
            f"TrainConfig.cpu_replicas={num_replicas}: TensorFlow already initialised "
            f"its devices with {have} logical CPU(s) in this process; the CPU "
            "can only be split before anything touches the devices "
            f"({error})"
        ) from error


def cluster_spec() -> dict:
    """The `TF_CONFIG` environment variable, checked: `{"cluster": {...}, "task": {"type", "index"}}`.

    Raises:
        DeviceError: TF_CONFIG is missing, not JSON, or its task is not in its cluster.
    """
    raw = os.environ.get(TF_CONFIG)
    expected = f"expected JSON like {TF_CONFIG_EXAMPLE} (python -m tfrec.launch sets it for local workers)"
    if not raw:
        raise DeviceError(f"TrainConfig.strategy='multi_worker' reads its cluster from the {TF_CONFIG} environment "
                          f"variable, which is not set; {expected}")
    try:
        spec = json.loads(raw)
    except ValueError as error:
        raise DeviceError(f"{TF_CONFIG}={raw!r} is not JSON ({error}); {expected}") from error
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    task = spec.get("task") if isinstance(spec, dict) else None
    if not isinstance(cluster, dict) or not cluster.get("worker") or not isinstance(task, dict):
        raise DeviceError(f"{TF_CONFIG}={raw!r} has no cluster.worker list or no task; {expected}")
    addresses = cluster.get(task.get("type"))
    index = task.get("index")
    if not isinstance(addresses, list) or not isinstance(index, int) or not 0 <= index < len(addresses):
        raise DeviceError(f"{TF_CONFIG}={raw!r}: task {task} is not one of the cluster's tasks "
                          f"{ {name: len(tasks) for name, tasks in cluster.items()} }; {expected}")
    return spec


def is_multi_worker(strategy) -> bool:
    """Whether `strategy` spans several processes (its collectives need every worker in step)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def make_strategy(name="auto", cpu_replicas=1):
    """Returns the `tf.distribute.Strategy` for `TrainConfig.strategy`.

    Args:
        name: "auto" (mirrored over GPUs or CPU replicas when there are more
            than one, else TensorFlow's default strategy), "mirrored" (over
            all GPUs, or all logical CPUs when there is no GPU) or
            "one_device" (first GPU or the CPU) or "multi_worker"
            (`MultiWorkerMirroredStrategy` over the `TF_CONFIG` cluster,
            each worker's GPUs or its CPU).
        cpu_replicas: the number of logical CPUs configured by
            `configure_cpu_replicas`; used when there is no GPU.

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        DeviceError: an unknown name, or a bad `TF_CONFIG` for "multi_worker".
    """
    if name not in STRATEGIES:
        raise DeviceError(f"TrainConfig.strategy={name!r}: expected one of {list(STRATEGIES)}")
    if name == "multi_worker":
        if cpu_replicas > 1:
            raise DeviceError(f"TrainConfig.cpu_replicas={cpu_replicas} with strategy='multi_worker': each worker "
                              "mirrors over its GPUs or uses its CPU as one device; expected cpu_replicas=1")
        cluster_spec()
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    replicas = gpus or cpus[:cpu_replicas]
    if name == "auto" and len(replicas) < 2:
        # Same placement as one_device, without the per-step cost of a
        # distributed input iterator (scripts/bench_training.py: 1.9x the
        # training examples/s of one_device on this 2-core CPU machine).
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(replicas[0].name)
    return tf.distribute.MirroredStrategy([device.name for device in replicas])
