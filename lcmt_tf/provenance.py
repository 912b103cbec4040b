"""What a result was computed with: the software and the device, recorded in every
results.json, evaluation.json and export so that a number can be traced and rerun."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from typing import Any

import lcmt_tf


@functools.lru_cache(maxsize=None)
def git_commit() -> str | None:
    """The commit of the checkout lcmt_tf runs from ("+dirty" when its tracked files
    differ from it), or None when it runs from an installed package. Only a package
    whose files git tracks counts: an install inside a checkout's virtual
    environment is not the checkout."""
    package = os.path.dirname(os.path.abspath(lcmt_tf.__file__))

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", "-C", package, *args], capture_output=True, text=True, timeout=10
        )

    try:
        if git("ls-files", "--error-unmatch", "__init__.py").returncode != 0:
            return None
        commit = git("rev-parse", "HEAD")
        if commit.returncode != 0:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no", ".").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("+dirty" if dirty else "")


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def accelerators(backend: str) -> list[str]:
    """The names of the accelerators the backend sees (GPUs, TPUs); [] on a CPU."""
    if backend == "jax":
        import jax

        return [device.device_kind for device in jax.devices() if device.platform != "cpu"]
    if backend == "tensorflow":
        import tensorflow as tf

        return [
            tf.config.experimental.get_device_details(device).get("device_name", device.name)
            for device in tf.config.list_physical_devices()
            if device.device_type != "CPU"
        ]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def backend_version(backend: str) -> str | None:
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend)
    if module is None:
        return None
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def software() -> dict[str, Any]:
    """{lcmt_tf, git_commit, keras, backend, backend_version, numpy, python, cpu,
    accelerators} of this process. Imports Keras (and so its backend)."""
    import keras
    import numpy as np

    backend = keras.backend.backend()
    return {
        "lcmt_tf": lcmt_tf.__version__,
        "git_commit": git_commit(),
        "keras": keras.__version__,
        "backend": backend,
        "backend_version": backend_version(backend),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "accelerators": accelerators(backend),
    }


def made_by(command: str) -> dict[str, Any]:
    """How an output was made, for the output itself: the command (with every
    override it took) and the software (`software()`) that ran it."""
    return {"command": command, "software": software()}


def made_by_markdown(summary: dict) -> str:
    """The Markdown line that says how `summary` was made, or "" without a record."""
    record = summary.get("made_by")
    if not record:
        return ""
    software_record = record["software"]
    return (
        f"\nMade by `{record['command']}` with lcmt_tf {software_record['lcmt_tf']} "
        f"(commit {software_record['git_commit']}), Keras {software_record['keras']} on "
        f"{software_record['backend']} {software_record['backend_version']}, "
        f"{software_record['cpu']}.\n"
    )
