"""Shared fixtures and helpers: small generated data, MeanTeacher batches, the
command line as a subprocess, and backend autodiff.

The Keras backend comes from KERAS_BACKEND (default here: tensorflow); CI runs the
suite once per backend.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_SCRIPT = os.path.join(ROOT, "scripts", "train.py")
# Command-line runs that test something else leave out the start-up loss check (about 5 s
# of compilation a process): tests/test_sanity.py tests it, and the end-to-end runs
# (test_cli.py, .ci/installed_package) run with it, as users do.
NO_STARTUP_CHECK = "--sanity_check=false"


def pytest_collection_modifyitems(config, items):
    """`slow_on_jax` / `slow_on_tensorflow`: checked in the other backend's suite in CI,
    and in this backend's suite only in the slow tier (it is `slow` here)."""
    marker = f"slow_on_{keras.backend.backend()}"
    for item in items:
        if item.get_closest_marker(marker):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def jax_compilation_cache(tmp_path_factory):
    """One JAX persistent compilation cache for every subprocess of the session (JAX's
    documented cache; it keys executables on the computation and the compiler, so a hit
    runs exactly what a compile would): the many short command-line runs on JAX compile
    the same steps once. This process's JAX has already started and is not affected."""
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(tmp_path_factory.mktemp("jax_cache")))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def train(*args, cwd=ROOT, env=None):
    """scripts/train.py with these arguments, as a user runs it; the CompletedProcess."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run(
        [sys.executable, TRAIN_SCRIPT, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


# What TensorFlow's C++ runtime prints on stderr when it is imported (absl-formatted
# INFO/WARNING lines such as "oneDNN custom operations are on"; TF 2.21 prints them
# whatever TF_CPP_MIN_LOG_LEVEL says), as opposed to what the command itself says.
BACKEND_STARTUP_LOG = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWE]\d{4} \d\d:\d\d:|"
    r"To enable the following instructions)"
)


def error_lines(stderr: str) -> list[str]:
    """The command's own stderr lines, without the backend's start-up log."""
    return [line for line in stderr.strip().splitlines() if not BACKEND_STARTUP_LOG.match(line)]


class FixedBatches(keras.utils.PyDataset):
    """The given list of batches, in order, every epoch."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]


def random_batch(num_labeled=4, num_unlabeled=6, shape=(8, 8, 1), seed=0):
    """A MeanTeacher batch dict of random uint8 images and labels in 0..9."""
    rng = np.random.default_rng(seed)
    return {
        "labeled_images": rng.integers(0, 256, (num_labeled, *shape), dtype="uint8"),
        "labels": rng.integers(0, 10, num_labeled).astype("int32"),
        "unlabeled_images": rng.integers(0, 256, (num_unlabeled, *shape), dtype="uint8"),
    }


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras' global dtype policy set to `name` (e.g. "mixed_float16") inside the block."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def small_mean_teacher(consistency_weight=None, lc_weight=None, **kwargs):
    """A MeanTeacher on digits_net at width 0.25 for 8x8 grayscale images; with
    `consistency_weight` / `lc_weight`, those values in its λ1 / λ2 variables (what a
    step reads outside fit; in fit, pass `constant_weights(...)` as callbacks)."""
    from lcmt_tf import Augmentation, MeanTeacher, digits_net

    augmentation = Augmentation(mean=[0.5], std=[0.25], max_translation=1, seed=0)
    model = MeanTeacher(digits_net(width=0.25), augmentation, **kwargs)
    for name, value in (("consistency_weight", consistency_weight), ("lc_weight", lc_weight)):
        if value is not None:
            getattr(model, name).assign(value)
    return model


def constant_weights(consistency=0.0, lc=0.0):
    """Callbacks that hold λ1 and λ2 constant in every epoch of a fit."""
    from lcmt_tf import ConsistencyRampup, LocalClusteringSchedule

    return [ConsistencyRampup(consistency, 0), LocalClusteringSchedule(lc, 0, 0)]


def backend_gradient(function, value: np.ndarray) -> np.ndarray:
    """d function(x) / dx at `value`, with the active backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        variable = tf.Variable(value)
        with tf.GradientTape() as tape:
            output = function(variable)
        return tape.gradient(
            output, variable, unconnected_gradients=tf.UnconnectedGradients.ZERO
        ).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(function)(value))
    if backend == "torch":
        import torch

        variable = torch.tensor(value, requires_grad=True)
        output = function(variable)
        if not output.requires_grad:  # not connected to the input
            return np.zeros_like(value)
        (gradient,) = torch.autograd.grad(output, variable, allow_unused=True)
        return np.zeros_like(value) if gradient is None else gradient.detach().numpy()
    raise NotImplementedError(backend)


def requires_backend(name: str):
    return pytest.mark.skipif(keras.backend.backend() != name, reason=f"needs the {name} backend")


@pytest.fixture(autouse=True, scope="session")
def _private_cache_directory(tmp_path_factory):
    """Folder data sets cache their decoded images in the user cache directory
    (~/.cache/lcmt_tf): the tests, and the commands they start, use their own."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(autouse=True)
def _clear_keras_session():
    keras.utils.set_random_seed(0)
    yield
    # Keras' global state only: its garbage collection (free_memory) took 0.3-1.2 s after
    # every test, a quarter of the suite's time; Python's own collector still runs.
    keras.backend.clear_session(free_memory=False)


def two_moons(num_points: int, noise: float, seed: int):
    """Two interleaving half circles, a classic cluster-assumption data set.

    Returns (points (N, 2) float32, labels (N,) int32).
    """
    rng = np.random.default_rng(seed)
    half = num_points // 2
    angle = rng.uniform(0, np.pi, size=num_points)
    labels = np.repeat([0, 1], [half, num_points - half]).astype("int32")
    x = np.where(labels == 0, np.cos(angle), 1 - np.cos(angle))
    y = np.where(labels == 0, np.sin(angle), 0.5 - np.sin(angle))
    points = np.stack([x, y], axis=1) + rng.normal(0, noise, size=(num_points, 2))
    order = rng.permutation(num_points)
    return points[order].astype("float32"), labels[order]


@pytest.fixture
def moons_images():
    """Two moons as 1x1 'images' with 2 channels, scaled into [0, 255]."""
    points, labels = two_moons(1200, noise=0.08, seed=0)
    scaled = (points - points.min(0)) / (points.max(0) - points.min(0)) * 255.0
    return scaled.reshape(-1, 1, 1, 2).astype("float32"), labels


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory):
    """Files for the bad-data cases: {name: path}, and "tmp", an empty folder."""
    from PIL import Image

    root = tmp_path_factory.mktemp("bad")
    paths = {"tmp": root / "empty"}
    paths["tmp"].mkdir()
    rng = np.random.default_rng(0)
    for name, corrupt, odd_shape in (("corrupt", True, False), ("shapes", False, True)):
        folder = root / name
        for split in ("train", "test"):
            for label in ("a", "b"):
                os.makedirs(folder / split / label)
                for index in range(3):
                    size = (9, 8) if odd_shape and index == 2 and label == "b" else (8, 8)
                    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
                        folder / split / label / f"{index}.png"
                    )
        if corrupt:
            with open(folder / "train" / "b" / "1.png", "r+b") as file:
                file.truncate(40)
        paths[name] = folder
    x = rng.integers(0, 256, (20, 8, 8, 1), dtype=np.uint8)
    labels = np.arange(20) % 4
    np.savez(root / "labels.npz", x_train=x, y_train=labels - 1, x_test=x, y_test=labels)
    paths["labels"] = root / "labels.npz"
    (root / "broken.npz").write_bytes(b"not an archive")
    paths["broken"] = root / "broken.npz"
    return paths


def write_digits_folder(root):
    """scikit-learn's digits as a practitioner's folder: 5 labeled images per class
    (PNG and BMP), 300 unlabeled in subfolders, 100 test images."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * 255 / 16).astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))
    taken = {label: 0 for label in range(10)}
    unlabeled = test = 0
    for index in order:
        label = int(digits.target[index])
        if taken[label] < 5:
            ending = "png" if taken[label] % 2 else "bmp"
            path = root / "train" / f"digit{label}" / f"{index}.{ending}"
            taken[label] += 1
        elif unlabeled < 300:
            path = root / "unlabeled" / f"batch{unlabeled % 3}" / f"{index}.png"
            unlabeled += 1
        elif test < 100:
            path = root / "test" / f"digit{label}" / f"{index}.png"
            test += 1
        else:
            continue
        os.makedirs(path.parent, exist_ok=True)
        Image.fromarray(images[index]).save(path)


@pytest.fixture(scope="session")
def folder_run(tmp_path_factory):
    """A practitioner's run, trained once for the session: the digits folder
    (`write_digits_folder`) with --num_labels=all, 3 epochs, LC from the second. Tests
    read it and add their own outputs beside it (evaluate, predict, export, rank, ...)."""
    root = tmp_path_factory.mktemp("practitioner")
    write_digits_folder(root / "data")
    completed = train("--flagfile=flags/digits.txt", f"--dataset=folder:{root / 'data'}",
                      "--num_labels=all", "--epochs=3", "--lc_start_epoch=1",
                      "--lc_rampup_epochs=1", "--lr_decay_epochs=1", "--eval_every=1",
                      "--unlabeled_batch_size=64", "--verbose=0", NO_STARTUP_CHECK,
                      f"--model_dir={root / 'run'}")  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return root


def snapshot_of(folder) -> dict:
    """{relative path: bytes} of every file under `folder`, but the run's lock file
    (lcmt_tf's own record of the last process that held the directory)."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            if name == ".lock":
                continue
            path = os.path.join(root, name)
            with open(path, "rb") as file:
                found[os.path.relpath(path, folder)] = file.read()
    return found


def one_line(completed, status=2) -> str:
    lines = error_lines(completed.stderr)
    assert completed.returncode == status, completed.stderr[-2000:]
    assert len(lines) == 1, lines
    return lines[0]


def damage(path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
