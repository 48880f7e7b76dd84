"""Runs a multi-worker training on this machine: N worker processes with `TF_CONFIG` on free loopback ports.

    python -m tfrec.launch --workers=2 -- --flagfile=configs/synthetic_tiny.flags --run_dir=runs/mw

Everything after `--` goes to every worker (`python -m tfrec.train` by
default), with `--strategy=multi_worker` added. Worker 0 is the chief: it
alone writes the run directory. Each worker's output lines are printed
prefixed by `[worker I]`. When a worker fails the others are stopped and
the launcher exits with that worker's status; rerunning the same command
resumes from the chief's last backup (docs/distributed.md).

Example:

>>> launch(["--flagfile=configs/synthetic_tiny.flags", "--run_dir=/tmp/mw"], workers=2)
0
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from absl import flags

from tfrec import config_flags

POLL_SECONDS = 0.2


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the flags of `python -m tfrec.launch` in `flag_values`."""
    flags.DEFINE_integer("workers", 2, "Worker processes to start on this machine.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_string("module", "tfrec.train", "Python module each worker runs (`python -m MODULE`), with the "
                        "arguments after `--` and --strategy=multi_worker.", flag_values=flag_values)
    flags.DEFINE_float("grace_seconds", 10.0, "When a worker fails, seconds the others get to exit after SIGTERM "
                       "before they are killed.", lower_bound=0, flag_values=flag_values)


def free_ports(count: int) -> list:
    """`count` distinct TCP ports free on the loopback interface (bound, read, released)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_configs(ports: list) -> list:
    """The `TF_CONFIG` value of each worker of a loopback cluster on `ports`."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            for index in range(len(ports))]


def _stream(index, process, out):
    for line in process.stdout:
        out.write(f"[worker {index}] {line}")
        out.flush()


def _stop(processes, grace_seconds):
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.time() + grace_seconds
    for process in processes:
        try:
            process.wait(timeout=max(deadline - time.time(), 0))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _shell_status(code):
    """A process's return code as a shell reports it: 128 + N for a kill by signal N."""
    return 128 - code if code < 0 else code


def launch(args: list, workers: int = 2, module: str = "tfrec.train", grace_seconds: float = 10.0,
           out=sys.stdout) -> int:
    """Runs `python -m module *args --strategy=multi_worker` as `workers` local workers.

    Args:
        args: the command-line arguments of every worker.
        workers: number of worker processes.
        module: the module each worker runs.
        grace_seconds: when one fails, seconds the others get after SIGTERM before SIGKILL.
        out: where the prefixed output lines go.

    Returns:
        0 when every worker succeeded, else the exit status of the first that
        failed (128 + N for a kill by signal N, as in a shell).
    """
    command = [sys.executable, "-m", module, *args, "--strategy=multi_worker"]
    processes, streams = [], []
    for index, config in enumerate(tf_configs(free_ports(workers))):
        process = subprocess.Popen(command, env=dict(os.environ, TF_CONFIG=config), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, bufsize=1)
        out.write(f"[launch] worker {index}: pid {process.pid}, TF_CONFIG={config}\n")
        out.flush()
        processes.append(process)
        streams.append(threading.Thread(target=_stream, args=(index, process, out), daemon=True))
        streams[-1].start()
    status = 0
    try:
        while True:
            codes = [process.poll() for process in processes]
            failed = [(index, code) for index, code in enumerate(codes) if code not in (None, 0)]
            if failed:  # a worker killed makes the others' next collective fail: all of those
                for index, code in failed:
                    out.write(f"[launch] worker {index} exited with status {code}\n")
                out.write("[launch] stopping the other workers\n")
                out.flush()
                status = _shell_status(failed[0][1])
                break
            if all(code == 0 for code in codes):
                break
            time.sleep(POLL_SECONDS)
    finally:
        _stop(processes, grace_seconds)
        for thread in streams:
            thread.join()
    return status


def main(argv):
    values = flags.FLAGS
    sys.exit(launch(argv[1:], values.workers, values.module, values.grace_seconds))


if __name__ == "__main__":
    config_flags.run(main, config_flags.help_groups("launch flags", config_flags.defined(define_flags)),
                     arguments=True)
