"""What results record of the software and device (lcmt_tf.provenance), and the
release metadata that must agree with the package."""

import os
import re
import subprocess

import keras
import numpy as np

import lcmt_tf
from lcmt_tf.provenance import git_commit, software

from conftest import ROOT


def test_software_names_every_version_and_the_device():
    record = software()
    assert record["lcmt_tf"] == lcmt_tf.__version__
    assert record["keras"] == keras.__version__ and record["numpy"] == np.__version__
    assert record["backend"] == keras.backend.backend() and record["backend_version"]
    # The accelerators, whatever the machine has: as many as Keras lists besides the CPU.
    if keras.backend.backend() == "torch":  # Keras lists no devices on torch
        import torch

        assert record["cpu"] and len(record["accelerators"]) == torch.cuda.device_count()
        return
    listed = [
        device
        for device in keras.distribution.list_devices()
        if not device.lower().startswith("cpu")
    ]
    assert record["cpu"] and len(record["accelerators"]) == len(listed)


def test_the_commit_is_the_checkouts_when_run_from_one():
    head = subprocess.run(
        ["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    commit = git_commit()
    if not os.path.isdir(os.path.join(ROOT, ".git")) or not head:
        assert commit is None
    else:
        assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit) and commit.startswith(head)


def test_citation_and_setup_agree_with_the_package():
    with open(os.path.join(ROOT, "CITATION.cff")) as file:
        citation = file.read()
    assert f"version: {lcmt_tf.__version__}\n" in citation
    with open(os.path.join(ROOT, "setup.cfg")) as file:
        setup = file.read()
    assert "license = Apache-2.0" in setup
    with open(os.path.join(ROOT, "LICENSE")) as file:
        assert "Apache License" in file.readline() + file.readline()
