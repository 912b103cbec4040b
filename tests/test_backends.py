"""TensorFlow's, JAX's and PyTorch's train_steps agree on loss, gradients and the
teacher's update."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


MODELS = ("digits_net", "conv_large_wn")
BACKENDS = ("tensorflow", "jax", "torch")


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    """{backend: {model: arrays}}: each backend's step, one subprocess per backend
    (a backend that is not installed is left out, and its comparison skipped)."""
    results = {}
    for backend in BACKENDS:
        if importlib.util.find_spec(backend) is None:
            continue
        output = tmp_path_factory.mktemp(backend)
        environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        completed = subprocess.run(
            [sys.executable, os.path.join(HERE, "backend_step.py"), str(output), *MODELS],
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        results[backend] = {}
        for model_name in MODELS:
            with np.load(output / f"{model_name}.npz") as archive:
                results[backend][model_name] = {key: archive[key] for key in archive.files}
    return results


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("backend", BACKENDS[1:])
def test_the_steps_of_jax_and_torch_agree_with_tensorflows(steps, backend, model_name):
    if backend not in steps:
        pytest.skip(f"{backend} is not installed")
    tensorflow, other = steps["tensorflow"][model_name], steps[backend][model_name]
    assert tensorflow.keys() == other.keys()
    for name in ("loss", "ce", "consistency", "lc", "lc_neighbor_fraction"):
        assert float(other[name]) == pytest.approx(float(tensorflow[name]), rel=1e-4, abs=1e-6), (
            name
        )
    # Every term contributes, so the comparison covers all of them.
    assert float(tensorflow["consistency"]) > 0 and float(tensorflow["lc"]) > 0
    assert 0 < float(tensorflow["lc_neighbor_fraction"]) < 1
    for name in tensorflow:
        if name.startswith(("gradient_", "teacher_delta_")):
            scale = np.abs(tensorflow[name]).max()
            assert scale > 0, name
            # Within 0.1 %, or the float32 resolution of a weight difference.
            atol = max(1e-4 * scale, float(tensorflow[f"resolution_{name}"]))
            np.testing.assert_allclose(
                other[name], tensorflow[name], rtol=1e-3, atol=atol, err_msg=name
            )
