"""Several training processes of one --distribute=multi_worker run on this machine
(127.0.0.1, free ports): how the tests and the scaling benchmark start them, and how
a user tries multi-worker training before taking it to several machines.

On several machines, each process is started by hand or by a scheduler with the
same environment these commands set (README, "Several machines"): TF_CONFIG on
TensorFlow, --coordinator_address, --num_processes and --process_id on JAX.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Sequence


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports of 127.0.0.1 that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


TRAIN_COMMAND = (sys.executable, "-m", "lcmt_tf.cli.train")


def local_worker_commands(
    backend: str, train_args: list[str], count: int, command: Sequence[str] = TRAIN_COMMAND
) -> list[tuple[list[str], dict[str, str]]]:
    """(argv, extra environment) of each of `count` processes of one multi-worker run of
    `command` (the train command) with `train_args` (which hold
    --distribute=multi_worker); process 0 is the chief."""
    train = [*command, *train_args]
    if backend == "tensorflow":
        workers = [f"127.0.0.1:{port}" for port in free_ports(count)]
        return [
            (
                train,
                {
                    "KERAS_BACKEND": backend,
                    "TF_CONFIG": json.dumps(
                        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
                    ),
                },
            )
            for i in range(count)
        ]
    (port,) = free_ports(1)
    flags = [f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={count}"]
    return [
        ([*train, *flags, f"--process_id={i}"], {"KERAS_BACKEND": backend}) for i in range(count)
    ]


def launch_local(
    backend: str,
    train_args: list[str],
    count: int,
    env: dict[str, str] | None = None,
    command: Sequence[str] = TRAIN_COMMAND,
    **popen,
) -> list[subprocess.Popen]:
    """Starts the processes of `local_worker_commands` (subprocess.Popen keyword
    arguments in `popen`); the chief first."""
    return [
        subprocess.Popen(command, env={**os.environ, **(env or {}), **extra}, **popen)
        for command, extra in local_worker_commands(backend, train_args, count, command)
    ]
