"""What is particular to the torch backend (lcmt_tf/steps/torch_steps.py): the
dropout workaround and its canary, the settings refused before a run starts, a
training state carried between backends, and the step's gradients against a plain
PyTorch autograd computation. The rest of the suite runs on torch too (.ci/run's
torch suite); these run in it only."""

import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import (
    NO_STARTUP_CHECK,
    one_line,
    random_batch,
    requires_backend,
    small_mean_teacher,
    train,
)

pytestmark = requires_backend("torch")
HERE = os.path.dirname(os.path.abspath(__file__))

QUICK = ["--dataset=digits", "--width=0.25", "--epochs=2", "--lr_decay_epochs=1",
         "--lc_start_epoch=1", "--lc_rampup_epochs=0", "--labeled_batch_size=8",
         "--unlabeled_batch_size=16", "--verbose=0", NO_STARTUP_CHECK]  # fmt: skip


def dropout_masks(generator_seeded: bool):
    """Two training-mode calls of a Dropout layer from the same generator state."""
    layer = keras.layers.Dropout(0.5)
    if generator_seeded:
        layer.seed_generator._initial_seed = 0  # what TorchSteps.fix_random_streams does
    state = keras.ops.convert_to_numpy(layer.seed_generator.state)
    ones = np.ones((4, 64), "float32")
    first = keras.ops.convert_to_numpy(layer(ones, training=True))
    layer.seed_generator.state.assign(state)
    second = keras.ops.convert_to_numpy(layer(ones, training=True))
    return first, second


def test_keras_still_takes_the_global_random_state_for_unseeded_dropout_on_torch():
    """The canary of the workaround: when this fails, Keras draws unseeded dropout from
    the generator's state itself, and fix_random_streams can go."""
    first, second = dropout_masks(generator_seeded=False)
    assert not np.array_equal(first, second)


def test_dropout_follows_its_generators_state_once_the_streams_are_fixed():
    first, second = dropout_masks(generator_seeded=True)
    np.testing.assert_array_equal(first, second)
    assert 0 < np.mean(first == 0) < 1


def test_every_seed_generator_of_a_model_draws_from_its_state():
    model = small_mean_teacher()  # digits_net has dropout in the student and the teacher
    generators = model.seed_generators()
    assert len(generators) >= 3
    assert all(generator._initial_seed is not None for generator in generators)
    assert model.fix_random_streams() == 0  # idempotent


def test_a_step_computes_the_gradient_autograd_computes_on_the_same_loss():
    """The optimizer receives d loss / d student from backward(): SGD with lr 1 moves
    each weight by exactly the gradient torch.autograd.grad gives for the same forward
    pass (same random state), and the teacher by the EMA of the new weights."""
    import torch

    batch = random_batch(seed=1)
    model = small_mean_teacher(ema_decay=0.5, consistency_weight=3.0, lc_weight=2.0)
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    state = [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables]
    data = {name: keras.ops.convert_to_tensor(value) for name, value in batch.items()}
    loss, terms, _ = model.compute_losses(data)
    assert float(terms["consistency"]) > 0 and float(terms["lc"]) > 0
    students = [v.value for v in model.trainable_variables]
    expected = torch.autograd.grad(loss, students, allow_unused=True)
    before = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    with torch.no_grad():
        for variable, value in zip(model.non_trainable_variables, state):
            variable.assign(value)  # the same batch statistics and random draws
    model.train_step(data)
    after = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    moved = 0
    for old, new, gradient in zip(before, after, expected):
        gradient = np.zeros_like(old) if gradient is None else gradient.detach().numpy()
        np.testing.assert_allclose(old - new, gradient, rtol=1e-4, atol=1e-6)
        moved += int(np.any(gradient != 0))
    assert moved == len(before)
    for teacher_index, student_index in model.ema_positions:
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(model.non_trainable_variables[teacher_index]),
            0.5 * state[teacher_index] + 0.5 * after[student_index],
            rtol=1e-6,
            atol=1e-7,
        )


def test_gradients_do_not_accumulate_from_step_to_step():
    """zero_grad before every backward(): two steps on the same batch from the same
    state move the weights by the same amount (SGD without momentum, lr small)."""
    batch = random_batch(seed=2)
    model = small_mean_teacher(consistency_weight=1.0, lc_weight=1.0)
    model.compile(optimizer=keras.optimizers.SGD(1e-3))
    data = {name: keras.ops.convert_to_tensor(value) for name, value in batch.items()}
    start = [keras.ops.convert_to_numpy(v) for v in model.variables]
    steps = []
    for _ in range(2):
        for variable, value in zip(model.variables, start):
            variable.assign(value)
        model.train_step(data)
        steps.append([keras.ops.convert_to_numpy(v) for v in model.trainable_variables])
    for first, second in zip(*steps):
        np.testing.assert_allclose(first, second, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    "setting,message",
    [
        ("--distribute=mirrored", "--distribute=mirrored: on the torch backend lcmt_tf trains"),
        ("--num_cpu_devices=2", "--distribute=none: on the torch backend lcmt_tf trains on one"),
        ("--steps_per_execution=2", "--steps_per_execution=2: Keras' torch trainer runs one"),
        ("--jit_compile", "--jit_compile: on the torch backend lcmt_tf's step runs eagerly"),
    ],
)
def test_what_torch_cannot_do_is_refused_before_the_run_starts(setting, message, tmp_path):
    completed = train(*QUICK, setting, f"--model_dir={tmp_path / 'run'}")
    assert message in one_line(completed)
    assert not (tmp_path / "run").exists()


def lcmt(*args):
    return subprocess.run(
        [sys.executable, "-m", "lcmt_tf", *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip


def test_check_devices_says_torch_trains_on_one_device():
    completed = lcmt("check-devices")
    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = dict(line.split(": ", 1) for line in completed.stdout.splitlines() if ": " in line)
    devices = lines["devices Keras sees"].split(", ")
    assert devices[-1] == "cpu:0"
    assert f"--distribute=none trains on {devices[0]}" in completed.stdout
    assert "--distribute=mirrored is refused on torch" in completed.stdout
    split = lcmt("check-devices", "--num_cpu_devices=2")
    assert "--num_cpu_devices: on the torch backend" in one_line(split)


def test_the_benchmark_refuses_what_torch_cannot_run():
    completed = lcmt("benchmark", "--backend=torch", "--jit_compile", "--modes=mt")
    assert "--jit_compile: on the torch backend" in one_line(completed)


def test_export_is_refused_on_torch_before_anything_is_read(tmp_path):
    completed = lcmt("export", f"--model_dir={tmp_path / 'none'}", f"--output={tmp_path / 'o'}")
    assert "export needs the TensorFlow backend" in one_line(completed)


@pytest.mark.parametrize("saved_on", ["tensorflow", "jax"])
def test_a_state_saved_on_another_backend_resumes_on_torch_and_back(saved_on, tmp_path):
    """Written on TensorFlow or JAX, loaded on torch (every array as written), trained
    on; and the state torch wrote loads on the first backend."""
    if importlib.util.find_spec(saved_on) is None:
        pytest.skip(f"{saved_on} is not installed")
    script = os.path.join(HERE, "backend_state.py")

    def run(backend, *args):
        completed = subprocess.run(
            [sys.executable, script, *args], capture_output=True, text=True, timeout=300,
            env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )  # fmt: skip
        assert completed.returncode == 0, completed.stderr[-3000:]
        return completed.stdout

    saved, on_torch, back = (tmp_path / name for name in ("saved.npz", "torch.npz", "back.npz"))
    run(saved_on, "save", str(saved))
    loss = float(run("torch", "resume", str(saved), str(on_torch)).split()[-1])
    assert np.isfinite(loss)
    run(saved_on, "resume", str(on_torch), str(back))
    for first, second in ((saved, on_torch), (on_torch, back)):
        with np.load(first) as written, np.load(second) as read:
            assert written.files == read.files
            for key in written.files:
                np.testing.assert_array_equal(read[key], written[key], err_msg=key)


def test_a_run_trained_on_torch_exports_on_tensorflow_with_the_same_probabilities(tmp_path):
    """The export writes through TensorFlow; a torch run's teacher, exported, gives the
    probabilities the teacher gives on torch."""
    from lcmt_tf.inference import load_run, probabilities

    run, exported = tmp_path / "run", tmp_path / "exported"
    completed = train(*QUICK, f"--model_dir={run}")
    assert completed.returncode == 0, completed.stderr[-2000:]
    completed = subprocess.run(
        [sys.executable, "-m", "lcmt_tf", "export", f"--model_dir={run}", f"--output={exported}"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    trained = load_run(str(run))
    images = np.random.default_rng(0).integers(0, 256, (6, *trained.image_shape), dtype=np.uint8)
    on_torch = probabilities(trained.model, images)
    import tensorflow as tf

    loaded = tf.saved_model.load(str(exported))  # held: serve reads its variables
    served = loaded.serve(tf.constant(images)).numpy()
    np.testing.assert_allclose(served, on_torch, rtol=1e-4, atol=1e-6)
    assert np.abs(on_torch - on_torch.mean(axis=0)).max() > 1e-3  # the images differ in class
