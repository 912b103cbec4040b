"""--init_from: a new run's student (and teacher) start from another run's student, a
.keras model or a .weights.h5 file, layer by layer; what does not fit is one line."""

import json

import numpy as np
import pytest

from lcmt_tf.builders import build_model, configure_backend
from lcmt_tf.config import TrainConfig
from lcmt_tf.data import LabeledBatches
from lcmt_tf.data.training_data import load_training_data
from lcmt_tf.errors import UserInputError
from lcmt_tf.semi_supervised import errors_from_accuracies
from lcmt_tf.train import run

pytestmark = pytest.mark.jax_only  # backend-independent weight copies: checked once


def settings(model_dir, **changes):
    values = dict(
        dataset="digits", width=0.25, epochs=1, eval_every=1, lc_weight=0.0, verbose=0,
        model_dir=str(model_dir),
    )  # fmt: skip
    return TrainConfig(**{**values, **changes})


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("source") / "run"
    results = run(settings(model_dir))
    return model_dir, results


def started(config):
    """The errors of the model a run with `config` starts from, before any training."""
    dataset, _, _, batches = load_training_data(config)
    configure_backend(config)
    model = build_model(config, dataset, batches.batch(0)["labeled_images"])
    evaluated = model.evaluate(
        LabeledBatches(dataset.x_test, dataset.y_test, 500), verbose=0, return_dict=True
    )
    return model, errors_from_accuracies(evaluated)


@pytest.mark.slow
def test_a_run_started_from_another_runs_student_evaluates_as_that_student(source_run, tmp_path):
    source_dir, results = source_run
    model, errors = started(settings(tmp_path / "new", init_from=str(source_dir), seed=5))
    assert errors["student_test_error"] == pytest.approx(results["student_test_error"], abs=1e-4)
    # The teacher is the student's copy at the start.
    assert errors["teacher_test_error"] == pytest.approx(results["student_test_error"], abs=1e-4)


def test_weights_files_and_plain_keras_models_start_it_too(source_run, tmp_path):
    import keras

    source_dir, results = source_run
    student = keras.models.load_model(source_dir / "model.keras").student
    student.save_weights(tmp_path / "student.weights.h5")
    student.save(tmp_path / "student.keras")
    for path in (tmp_path / "student.weights.h5", tmp_path / "student.keras"):
        _, errors = started(settings(tmp_path / path.stem, init_from=str(path)))
        assert errors["student_test_error"] == pytest.approx(
            results["student_test_error"], abs=1e-4
        ), path


def test_what_does_not_fit_names_the_first_layer(source_run, tmp_path):
    source_dir, _ = source_run
    with pytest.raises(UserInputError) as error:
        started(settings(tmp_path / "wide", init_from=str(source_dir), width=0.5))
    message = str(error.value)
    assert message.startswith(f"--init_from={source_dir}: layer 'block1_0_conv' has weights of")
    assert "(the first layer that does not fit)" in message and "\n" not in message
    with pytest.raises(UserInputError, match="is a folder without model.keras"):
        started(settings(tmp_path / "x", init_from=str(tmp_path)))


@pytest.mark.slow
def test_init_from_is_part_of_the_runs_configuration(source_run, tmp_path):
    source_dir, _ = source_run
    results = run(settings(tmp_path / "fine_tuned", init_from=str(source_dir), lr=0.01))
    config = json.loads((tmp_path / "fine_tuned" / "config.json").read_text())
    assert config["init_from"] == str(source_dir) and results["completed"]
    assert np.isfinite(results["teacher_test_error"])
