"""TensorFlow and JAX train_steps agree on loss, gradients and the teacher's update."""

import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def run_step(backend, output, model_name):
    environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    completed = subprocess.run(
        [sys.executable, os.path.join(HERE, "backend_step.py"), str(output), model_name],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    with np.load(output) as archive:
        return {key: archive[key] for key in archive.files}


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("model_name", ["digits_net", "conv_large_wn"])
def test_tensorflow_and_jax_steps_agree(tmp_path, model_name):
    pytest.importorskip("jax")
    tensorflow = run_step("tensorflow", tmp_path / "tensorflow.npz", model_name)
    jax = run_step("jax", tmp_path / "jax.npz", model_name)
    assert tensorflow.keys() == jax.keys()
    for name in ("loss", "ce", "consistency", "lc", "lc_neighbor_fraction"):
        assert float(jax[name]) == pytest.approx(float(tensorflow[name]), rel=1e-4, abs=1e-6), name
    # Every term contributes, so the comparison covers all of them.
    assert float(tensorflow["consistency"]) > 0 and float(tensorflow["lc"]) > 0
    assert 0 < float(tensorflow["lc_neighbor_fraction"]) < 1
    for name in tensorflow:
        if name.startswith(("gradient_", "teacher_delta_")):
            scale = np.abs(tensorflow[name]).max()
            assert scale > 0, name
            np.testing.assert_allclose(
                jax[name], tensorflow[name], rtol=1e-3, atol=1e-4 * scale, err_msg=name
            )
