"""run(config) in-process, as flax's train_test.py does: real tracebacks, no start-up."""

import csv
import json

import keras
import numpy as np
import pytest

import lcmt_tf
from lcmt_tf.config import TrainConfig
from lcmt_tf.errors import UserInputError
from lcmt_tf.train import run


@pytest.mark.slow_on_jax
def test_six_epochs_of_mt_plus_lc_on_digits(tmp_path):
    config = TrainConfig(
        dataset="digits",
        model="digits_net",
        width=0.25,
        epochs=6,
        eval_every=2,
        ema_decay=0.9,
        lc_weight=1.0,
        lc_start_epoch=2,
        lc_epsilon_quantile=0.3,
        model_dir=str(tmp_path / "run"),
        verbose=0,
    )
    results = run(config)
    assert results["completed"] and results["epochs_run"] == 6 and results["stop_reason"] is None
    assert results["num_labeled"] == 50 and results["num_unlabeled"] == 1347 - 50
    assert results["teacher_test_error"] < 60  # chance is 90
    assert results["software"]["lcmt_tf"] == lcmt_tf.__version__
    assert results["software"]["backend"] == keras.backend.backend()
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    assert written == results
    for name in ("config.json", "labeled_indices.json", "training_state.npz", "model.keras"):
        assert (tmp_path / "run" / name).exists(), name
    with np.load(tmp_path / "run" / "training_state.npz") as state:
        assert int(state["next_epoch"]) == 6
        assert float(state["variable/model/lc_epsilon"]) == results["lc_epsilon"]

    with open(tmp_path / "run" / "history.csv", newline="") as file:
        history = list(csv.DictReader(file))
    assert [int(row["epoch"]) for row in history] == [1, 2, 3, 4, 5, 6]
    # Epsilon: the configured one until the start epoch, then the measured quantile.
    epsilons = [float(row["lc_epsilon"]) for row in history]
    assert epsilons[:2] == [1.0, 1.0] and len(set(epsilons[2:])) == 1
    assert epsilons[2] == pytest.approx(results["lc_epsilon"]) and results["lc_epsilon"] != 1.0
    for row in history:
        assert 0 <= float(row["lc_distance_p10"]) <= float(row["lc_distance_p50"])
        assert float(row["lc_distance_p50"]) <= float(row["lc_distance_p90"])
    # The best error over evaluations (epochs 2, 4, 6), reported apart from the final one.
    evaluated = {
        int(row["epoch"]): float(row["teacher_test_error"])
        for row in history
        if row["teacher_test_error"]
    }
    assert sorted(evaluated) == [2, 4, 6]
    assert results["teacher_test_error"] == pytest.approx(evaluated[6])
    best_epoch = min(evaluated, key=evaluated.get)
    assert results["teacher_best_test_error"] == pytest.approx(evaluated[best_epoch])
    assert results["teacher_best_test_error_epoch"] == best_epoch
    assert "selected on the test set" in results["teacher_best_test_error_note"]


# (settings, message): every mistake run() refuses before it writes anything.
BAD_SETTINGS = [
    (dict(lc_epsilon=0), "--lc_epsilon must be > 0"),
    (dict(lc_weight=-1), "--lc_weight must be >= 0 (0 = plain Mean Teacher)"),
    (dict(consistency_weight=-1), "--consistency_weight must be >= 0"),
    (dict(ema_decay=1), "--ema_decay must be in [0, 1)"),
    (dict(labeled_batch_size=0), "--labeled_batch_size and --unlabeled_batch_size must be >= 1"),
    (
        dict(epochs=10, lc_weight=1, lc_start_epoch=20),
        "--lc_start_epoch=20 is not before --epochs=10: Local Clustering would never run; "
        "lower it or set --lc_weight=0",
    ),
    (dict(weight_decay_mode="l2"), "--weight_decay_mode must be coupled or decoupled, not 'l2'"),
    (
        dict(model="resnet"),
        "--model must be one of conv_large, conv_large_wn, digits_net, wrn_28_2, "
        "keras_applications:NAME or keras_hub:PRESET_DIR, not 'resnet'",
    ),
    (dict(steps_per_execution=0), "--steps_per_execution must be >= 1"),
    (
        dict(keep_epochs="1,x"),
        "--keep_epochs='1,x' must list epochs between 1 and --epochs=1, separated by commas",
    ),
    (dict(keep_epochs="2"), "--keep_epochs='2' must list epochs between 1 and --epochs=1"),
    (dict(fork_from="runs/mt"), "--fork_from starts at --lc_start_epoch, which must be >= 1"),
    (
        dict(fork_from="/no/such/run", lc_start_epoch=1, epochs=2),
        "--fork_from=/no/such/run is not a run directory (no config.json)",
    ),
    (
        dict(num_labels=55),
        "--num_labels=55 is not divisible by the 10 classes; use a multiple of 10",
    ),
    (
        dict(num_labels=5000),
        "--num_labels=5000 needs 500 labeled images of class 0 plus unlabeled ones, "
        "but it has 134 images",
    ),
    (
        dict(model="conv_large_wn"),
        "conv_large_wn needs images of at least 12x12, digits has 8x8; use --model=digits_net",
    ),
    (dict(dataset="imagenet"), "--dataset='imagenet' is not a known source"),
    (
        dict(dataset="npz:/no/such/file.npz"),
        "--dataset=npz:/no/such/file.npz: /no/such/file.npz does not exist",
    ),
    (dict(dataset="npz:{broken}"), "{broken} is not an .npz archive"),
    (dict(dataset="npz:{labels}", num_labels=4), "npz:{labels}: train label -1 is outside 0..3"),
    (
        dict(dataset="folder:{corrupt}"),
        "cannot read image {corrupt}/train/b/1.png: corrupt or truncated",
    ),
    (
        dict(dataset="folder:{shapes}"),
        "images of different shapes: {shapes}/train/b/2.png is (9, 8, 3)",
    ),
]


@pytest.mark.parametrize("settings,message", BAD_SETTINGS, ids=[str(s) for s, _ in BAD_SETTINGS])
def test_run_refuses_bad_settings_before_writing_anything(settings, message, bad_inputs, tmp_path):
    settings = {k: v.format(**bad_inputs) if isinstance(v, str) else v for k, v in settings.items()}
    config = TrainConfig(**{"epochs": 1, "model_dir": str(tmp_path / "run"), **settings})
    with pytest.raises(UserInputError) as error:
        run(config)
    assert str(error.value).startswith(message.format(**bad_inputs)), str(error.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.tensorflow_only
def test_missing_tfds_data_is_refused_with_how_to_provide_it(bad_inputs, tmp_path):
    config = TrainConfig(
        dataset="cifar10", data_dir=str(bad_inputs["tmp"]), model_dir=str(tmp_path / "run")
    )
    with pytest.raises(UserInputError, match="cifar10 is not available in .*; download it where"):
        run(config)
    assert not (tmp_path / "run").exists()


def quick(model_dir, **settings) -> TrainConfig:
    return TrainConfig(
        dataset="digits", width=0.25, epochs=1, verbose=0, model_dir=str(model_dir), **settings
    )


@pytest.mark.tensorflow_only  # run-directory rules: backend-independent, checked once
def test_a_run_directory_with_another_configuration_is_refused_unless_overwrite(tmp_path):
    model_dir = tmp_path / "run"
    run(quick(model_dir))
    before = {path.name: path.stat().st_mtime_ns for path in model_dir.iterdir()}
    with pytest.raises(UserInputError) as error:
        run(quick(model_dir, lr=0.1))
    assert str(error.value) == (
        f"--model_dir={model_dir} holds a run with a different configuration (lr: 0.05 -> 0.1); "
        "use another --model_dir, or --overwrite to replace it"
    )
    assert {path.name: path.stat().st_mtime_ns for path in model_dir.iterdir()} == before
    replaced = run(quick(model_dir, lr=0.1, overwrite=True))
    assert replaced["config"]["lr"] == 0.1 and replaced["resumed_from_epoch"] == 0


@pytest.mark.tensorflow_only  # run-directory rules: backend-independent, checked once
def test_rerunning_a_finished_run_changes_nothing(tmp_path):
    model_dir = tmp_path / "run"
    run(quick(model_dir))
    with np.load(model_dir / "training_state.npz") as archive:
        before = {key: archive[key] for key in archive.files}
    again = run(quick(model_dir))
    assert again["already_finished"] and again["epochs_run"] == 1
    with np.load(model_dir / "training_state.npz") as archive:
        for key in archive.files:
            np.testing.assert_array_equal(archive[key], before[key])


@pytest.mark.slow
@pytest.mark.tensorflow_only  # run-directory rules: backend-independent, checked once
def test_a_moved_run_directory_resumes(tmp_path):
    run(quick(tmp_path / "run"))
    (tmp_path / "run").rename(tmp_path / "moved")
    again = run(quick(tmp_path / "moved"))
    assert again["already_finished"] and again["epochs_run"] == 1
