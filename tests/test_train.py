"""run(config) in-process, as flax's train_test.py does: real tracebacks, no start-up."""

import json

import numpy as np

from lcmt_tf.config import TrainConfig
from lcmt_tf.train import run


def test_six_epochs_of_mt_plus_lc_on_digits(tmp_path):
    config = TrainConfig(
        dataset="digits",
        model="digits_net",
        width=0.25,
        epochs=6,
        ema_decay=0.9,
        lc_weight=1.0,
        lc_epsilon=0.5,
        model_dir=str(tmp_path / "run"),
        verbose=0,
    )
    results = run(config)
    assert results["completed"] and results["epochs_run"] == 6 and results["stop_reason"] is None
    assert results["num_labeled"] == 50 and results["num_unlabeled"] == 1347 - 50
    assert results["teacher_test_error"] < 60  # chance is 90
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    assert written == results
    for name in ("config.json", "labeled_indices.json", "training_state.npz", "model.keras"):
        assert (tmp_path / "run" / name).exists(), name
    with np.load(tmp_path / "run" / "training_state.npz") as state:
        assert int(state["next_epoch"]) == 6
