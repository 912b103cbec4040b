"""The model card a finished run writes (Hugging Face README.md format), the command it
gives, and the concise progress bar."""

import shlex

from lcmt_tf.callbacks import ConciseProgbar
from lcmt_tf.config import TrainConfig
from lcmt_tf.flagfiles import train_config
from lcmt_tf.run_dir.model_card import model_card, train_command


def test_the_cards_command_trains_the_same_configuration():
    config = train_config(["--flagfile=cifar10_4000", "--seed=3", "--hflip=false"])
    command = shlex.split(train_command(config))
    assert command[:2] == ["lcmt", "train"]
    assert train_config(command[2:]) == config
    assert train_command(TrainConfig()) == "lcmt train"


def test_the_card_has_a_model_index_of_the_final_errors_and_labels_the_best_one():
    config = train_config(["--flagfile=digits"])
    results = {
        "config": config.to_dict(), "teacher_test_error": 7.5, "student_test_error": 8.25,
        "teacher_best_test_error": 6.0, "teacher_best_test_error_epoch": 40, "epochs_run": 100,
        "completed": True, "num_labeled": 50, "num_unlabeled": 1297,
        "evaluation_set": "test set", "software": {"lcmt_tf": "0.1.0", "keras": "3.15.1"},
    }  # fmt: skip
    card = model_card(results, {"class_names": list("0123456789")}, "digits demo")
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    assert "library_name: keras" in front and 'name: "digits demo"' in front
    assert "value: 7.5000" in front and "value: 8.2500" in front and "value: 6.0000" in front
    assert "\"lowest teacher test error over the run's evaluations (selected on the test" in front
    assert "| teacher test error (final epoch) | 7.50 % |" in body
    assert "(epoch 40; selected on the test set" in body
    assert "MT + LC image classifier" in body and "lcmt_tf 0.1.0, keras 3.15.1" in body
    assert train_command(config) in body


def test_the_progress_bar_shows_the_terms_and_lc_values_only_once_lc_is_on():
    logs = {
        "loss": 1.0, "ce": 0.5, "consistency": 0.2, "lc": 0.1, "lc_epsilon": 0.3,
        "lc_neighbor_fraction": 0.4, "lc_weight": 0.0, "feature_spread": 2.0,
        "lc_distance_p10": 0.1, "student_accuracy": 0.7, "teacher_accuracy": 0.8,
        "learning_rate": 0.05,
    }  # fmt: skip
    bar = ConciseProgbar()
    assert list(bar._shown(logs)) == [
        "loss", "ce", "consistency", "student_accuracy", "teacher_accuracy"
    ]  # fmt: skip
    assert list(bar._shown({**logs, "lc_weight": 1.0})) == [
        "loss", "ce", "consistency", "lc", "lc_epsilon", "lc_neighbor_fraction",
        "student_accuracy", "teacher_accuracy",
    ]  # fmt: skip
