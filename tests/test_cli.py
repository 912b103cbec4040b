"""The command line, run as a user runs it: real subprocesses of scripts/train.py."""

import dataclasses
import functools
import json
import subprocess
import sys

import keras
import pytest

from lcmt_tf.config import TrainConfig
from lcmt_tf.run_dir.fork import check_fork

from conftest import NO_STARTUP_CHECK, error_lines, train

# A couple of epochs of MT+LC on digits, with LC on from the second epoch.
QUICK = [
    "--dataset=digits",
    "--model=digits_net",
    "--width=0.5",
    "--num_labels=50",
    "--epochs=3",
    "--eval_every=2",
    "--lc_weight=1",
    "--lc_start_epoch=1",
    "--lc_rampup_epochs=1",
    "--lc_epsilon=0.5",
    "--consistency_rampup_epochs=1",
    "--lr_decay_epochs=1",
    "--verbose=2",
]


@functools.lru_cache(maxsize=None)
def _dry_run_output(*args):
    completed = train(*args, "--dry_run")
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def dry_run(*args):
    """The configuration scripts/train.py resolves from these arguments (each distinct
    command runs once per test session)."""
    return json.loads(_dry_run_output(*args))


# The paper's section V-A settings, written out independently of the flag files.
SHARED = dict(
    labeled_batch_size=32,
    unlabeled_batch_size=128,
    lr=0.05,
    momentum=0.9,
    nesterov=True,
    weight_decay=1e-4,
    weight_decay_mode="coupled",
    consistency_weight=100.0,
    consistency_rampup_epochs=5,
    model="conv_large_wn",
    width=1.0,
    translate=2,
    translate_padding="zero",
    forward_passes="separate",
    eval_every=5,
)
PAPER = {
    "svhn_500": dict(
        dataset="svhn",
        num_labels=500,
        ema_decay=0.995,
        hflip=False,
        epochs=600,
        lr_decay_epochs=200,
        lc_weight=20.0,
        lc_start_epoch=300,
        lc_rampup_epochs=50,
        lc_epsilon=50.0,
    ),
    "svhn_1000": dict(
        dataset="svhn",
        num_labels=1000,
        ema_decay=0.995,
        hflip=False,
        epochs=600,
        lr_decay_epochs=200,
        lc_weight=20.0,
        lc_start_epoch=300,
        lc_rampup_epochs=50,
        lc_epsilon=50.0,
    ),
    "svhn_500_mt": dict(
        dataset="svhn",
        num_labels=500,
        ema_decay=0.995,
        hflip=False,
        epochs=500,
        lr_decay_epochs=200,
        lc_weight=0.0,
    ),
    "svhn_1000_mt": dict(
        dataset="svhn",
        num_labels=1000,
        ema_decay=0.995,
        hflip=False,
        epochs=500,
        lr_decay_epochs=200,
        lc_weight=0.0,
    ),
    "cifar10_2000": dict(
        dataset="cifar10",
        num_labels=2000,
        ema_decay=0.99,
        hflip=True,
        epochs=1000,
        lr_decay_epochs=200,
        lc_weight=10.0,
        lc_start_epoch=600,
        lc_rampup_epochs=100,
        lc_epsilon=40.0,
    ),
    "cifar10_4000": dict(
        dataset="cifar10",
        num_labels=4000,
        ema_decay=0.99,
        hflip=True,
        epochs=1200,
        lr_decay_epochs=200,
        lc_weight=10.0,
        lc_start_epoch=600,
        lc_rampup_epochs=100,
        lc_epsilon=50.0,
    ),
    "cifar10_2000_mt": dict(
        dataset="cifar10",
        num_labels=2000,
        ema_decay=0.99,
        hflip=True,
        epochs=800,
        lr_decay_epochs=200,
        lc_weight=0.0,
    ),
    "cifar10_4000_mt": dict(
        dataset="cifar10",
        num_labels=4000,
        ema_decay=0.99,
        hflip=True,
        epochs=1000,
        lr_decay_epochs=200,
        lc_weight=0.0,
    ),
    # The authors' config.py: schedule_epoch [800, 1000] (LC) and [600, 800] (MT), eps 40.
    "cifar10_4000_authors": dict(
        dataset="cifar10",
        num_labels=4000,
        ema_decay=0.99,
        hflip=True,
        epochs=1000,
        lr_decay_epochs=200,
        lc_weight=10.0,
        lc_start_epoch=600,
        lc_rampup_epochs=100,
        lc_epsilon=40.0,
    ),
    "cifar10_4000_authors_mt": dict(
        dataset="cifar10",
        num_labels=4000,
        ema_decay=0.99,
        hflip=True,
        epochs=800,
        lr_decay_epochs=200,
        lc_weight=0.0,
    ),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_flag_files_hold_the_papers_settings(name):
    resolved = dry_run(f"--flagfile=flags/{name}.txt")
    for key, value in {**SHARED, **PAPER[name]}.items():
        assert resolved[key] == value, (name, key)
    assert resolved["model_dir"] == f"runs/{name}"


def resolved_config(name):
    values = dry_run(f"--flagfile=flags/{name}.txt")
    values.pop("dry_run")
    return TrainConfig.from_dict(values)


@pytest.mark.parametrize(
    "setting",
    ["digits", "stl10", *sorted(name[: -len("_mt")] for name in PAPER if name.endswith("_mt"))],
)
def test_every_mt_lc_flag_file_can_fork_from_its_mean_teacher_pair_at_lc_start(setting):
    # The pair differs in length and decay, but not before LC starts (issue: fork protocol).
    mean_teacher, lcmt = resolved_config(f"{setting}_mt"), resolved_config(setting)
    assert mean_teacher.epochs != lcmt.epochs or setting == "digits"
    check_fork(dataclasses.replace(lcmt, fork_from=mean_teacher.model_dir), mean_teacher)


# USB's classic_cv FixMatch on CIFAR-10 (and the FixMatch paper), written out
# independently of the flag files.
USB_FIXMATCH = dict(
    dataset="cifar10",
    method="fixmatch",
    model="wrn_28_2",
    labeled_batch_size=64,
    unlabeled_ratio=7,
    unlabeled_batch_size=448,
    lr=0.03,
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
    weight_decay_mode="coupled",
    lr_schedule="cosine",
    lr_schedule_steps=2**20,
    lr_decay_epochs=0,
    fixmatch_threshold=0.95,
    unlabeled_weight=1.0,
    ema_decay=0.999,
    hflip=True,
    translate=4,
    translate_padding="reflect",
)


@pytest.mark.parametrize("labels", [40, 250, 4000])
def test_fixmatch_flag_files_hold_usbs_protocol_and_fork_into_their_lc_twin(labels):
    name = f"cifar10_fixmatch_{labels}"
    fixmatch, twin = (
        dry_run(f"--flagfile=flags/{name}.txt"),
        dry_run(f"--flagfile=flags/{name}_lc.txt"),
    )
    for resolved in (fixmatch, twin):
        for key, value in {**USB_FIXMATCH, "num_labels": labels}.items():
            assert resolved[key] == value, (name, key)
    # An epoch is one pass over the unlabeled pool (the labeled images excluded): the
    # run is the fewest epochs that reach 2^20 steps.
    steps = (50000 - labels) // 448
    assert (fixmatch["epochs"] - 1) * steps < 2**20 <= fixmatch["epochs"] * steps
    assert fixmatch["lc_weight"] == 0 and twin["lc_weight"] > 0
    assert fixmatch["keep_epochs"] == str(twin["lc_start_epoch"])
    assert (fixmatch["model_dir"], twin["model_dir"]) == (f"runs/{name}", f"runs/{name}_lc")
    mine, source = resolved_config(f"{name}_lc"), resolved_config(name)
    check_fork(dataclasses.replace(mine, fork_from=source.model_dir), source)


def test_the_fixmatch_demo_is_the_demo_with_fixmatch_and_its_twin_adds_only_lc():
    demo, fixmatch = (
        dry_run("--flagfile=flags/digits.txt"),
        dry_run("--flagfile=flags/digits_fixmatch.txt"),
    )
    twin = dry_run("--flagfile=flags/digits_fixmatch_lc.txt")
    assert fixmatch["method"] == twin["method"] == "fixmatch" and demo["method"] == "mean_teacher"
    fixmatch_only = {"method", "ema_decay", "consistency_weight", "lc_weight", "model_dir"}
    assert {k for k in demo if demo[k] != fixmatch[k]} == fixmatch_only
    lc = {"lc_weight", "lc_start_epoch", "lc_rampup_epochs", "lc_epsilon", "model_dir"}
    assert {k for k in fixmatch if fixmatch[k] != twin[k]} <= lc
    assert (twin["lc_weight"], twin["lc_start_epoch"]) == (
        demo["lc_weight"],
        demo["lc_start_epoch"],
    )
    mine, source = resolved_config("digits_fixmatch_lc"), resolved_config("digits_fixmatch")
    check_fork(dataclasses.replace(mine, fork_from=source.model_dir), source)


def test_demo_flag_files_differ_only_in_the_unlabeled_losses():
    lcmt = dry_run("--flagfile=flags/digits.txt")
    mean_teacher = dry_run("--flagfile=flags/digits_mt.txt")
    supervised = dry_run("--flagfile=flags/digits_supervised.txt")
    assert lcmt["num_labels"] == mean_teacher["num_labels"] == supervised["num_labels"] == 50
    assert lcmt["lc_weight"] > 0 and mean_teacher["lc_weight"] == 0 and supervised["lc_weight"] == 0
    assert supervised["consistency_weight"] == 0 and mean_teacher["consistency_weight"] > 0
    ignored = {
        "lc_weight",
        "lc_start_epoch",
        "lc_rampup_epochs",
        "lc_epsilon",
        "consistency_weight",
        "model_dir",
    }
    for other in (mean_teacher, supervised):
        assert {k: v for k, v in lcmt.items() if k not in ignored} == {
            k: v for k, v in other.items() if k not in ignored
        }


def test_dry_run_prints_every_flag_and_command_line_wins_over_flag_file():
    resolved = dry_run(
        "--flagfile=flags/cifar10_2000.txt", "--lc_epsilon=7", "--dataset=npz:/somewhere.npz"
    )
    assert resolved["lc_epsilon"] == 7.0 and resolved["dataset"] == "npz:/somewhere.npz"
    assert resolved["dry_run"] is True
    for name in (
        "data_dir",
        "label_seed",
        "seed",
        "model",
        "width",
        "epochs",
        "lr",
        "lr_decay_epochs",
        "momentum",
        "nesterov",
        "weight_decay",
        "ema_decay",
        "consistency_weight",
        "consistency_rampup_epochs",
        "lc_weight",
        "lc_start_epoch",
        "lc_rampup_epochs",
        "lc_epsilon",
        "labeled_batch_size",
        "unlabeled_batch_size",
        "eval_every",
        "model_dir",
    ):
        assert name in resolved


@pytest.mark.tensorflow_only
def test_end_to_end_on_digits_writes_results_and_tensorboard(tmp_path):
    model_dir = tmp_path / "run"
    progress_bar = [flag for flag in QUICK if flag != "--verbose=2"]  # the default, 1
    completed = train(*progress_bar, f"--model_dir={model_dir}")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "teacher test error" in completed.stdout
    # Not a terminal: the progress bar is a line per epoch, not a line per redraw.
    progress = [line for line in completed.stdout.splitlines() if " - loss: " in line]
    assert len(progress) == 3, completed.stdout
    results = json.loads((model_dir / "results.json").read_text())
    assert results["epochs_run"] == 3 and results["completed"] and results["stop_reason"] is None
    assert 0 <= results["teacher_test_error"] <= 100 and 0 <= results["student_test_error"] <= 100
    assert results["config"]["lc_weight"] == 1.0 and results["wall_time_s"] > 0
    indices = json.loads((model_dir / "labeled_indices.json").read_text())["labeled_indices"]
    assert len(indices) == 50 == len(set(indices))
    assert json.loads((model_dir / "config.json").read_text())["epochs"] == 3
    assert (model_dir / "model.keras").exists() and (model_dir / "training_state.npz").exists()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(
        str(model_dir / "tensorboard" / "train"), size_guidance={"tensors": 0}
    )
    accumulator.Reload()
    tags = set(accumulator.Tags()["tensors"]) | set(accumulator.Tags()["scalars"])
    expected = {
        "epoch_loss",
        "epoch_ce",
        "epoch_consistency",
        "epoch_lc",
        "epoch_consistency_weight",
        "epoch_lc_weight",
        "epoch_learning_rate",
        "epoch_lc_neighbor_fraction",
        "epoch_student_accuracy",
        "epoch_teacher_accuracy",
        "epoch_student_test_error",
        "epoch_teacher_test_error",
        "epoch_feature_spread",
    }
    assert expected <= tags, expected - tags
    lc_weight = [
        float(__import__("tensorflow").make_ndarray(event.tensor_proto))
        for event in accumulator.Tensors("epoch_lc_weight")
    ]
    assert lc_weight[0] == 0.0 and lc_weight[-1] == 1.0


def test_every_flag_has_the_help_text_of_its_config_field():
    completed = train("--helpfull")
    assert completed.returncode == 0, completed.stderr
    for field in dataclasses.fields(TrainConfig):
        help_text = field.metadata["help"]
        assert help_text and f"{field.name}: {help_text.split()[0]}" in completed.stdout, field.name


def test_an_unsupported_backend_is_one_line_and_exit_status_2(tmp_path):
    completed = train(
        "--epochs=1", f"--model_dir={tmp_path / 'run'}", env={"KERAS_BACKEND": "numpy"}
    )
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
    last_line = completed.stderr.strip().splitlines()[-1]
    assert (
        last_line
        == "train.py: error: KERAS_BACKEND=numpy: lcmt_tf trains on the tensorflow, jax, torch "
        "backends"
    )
    assert not (tmp_path / "run").exists()


def image_folder(root, with_test=True, duplicate=False):
    """2 classes x 6 labeled 8x8 images, 40 unlabeled, optionally 4 test images per
    class (the first a copy of a labeled image with `duplicate`)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)

    def save(path, pixels):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)

    first = None
    for label in ("cat", "dog"):
        for index in range(6):
            pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            first = pixels if first is None else first
            save(root / "train" / label / f"{index}.png", pixels)
            if with_test and index < 4:
                copy = duplicate and label == "cat" and index == 0
                save(root / "test" / label / f"{index}.png", first if copy else pixels // 2)
    for index in range(40):
        save(root / "unlabeled" / f"{index}.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    return root


FOLDER_RUN = [*QUICK[1:3], "--num_labels=all", "--unlabeled_batch_size=16",
              "--labeled_batch_size=4", "--translate=1", NO_STARTUP_CHECK]  # fmt: skip


@pytest.mark.jax_only  # the command line, backend-independent: checked once
def test_check_data_prints_the_summary_and_exits_0(tmp_path):
    data = image_folder(tmp_path / "data")
    completed = train(f"--dataset=folder:{data}", *FOLDER_RUN, "--check_data")
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "| cat | 6 | 6 | 0 | 4 |" in completed.stdout
    assert "| (unlabeled/ folder) | — | 0 | 40 | — |" in completed.stdout
    assert "images: 8x8, 1 channel" in completed.stdout
    assert "labeled images also in the evaluation set (same pixels): 0" in completed.stdout


@pytest.mark.jax_only  # the command line, backend-independent: checked once
def test_check_data_names_each_problem_on_a_line_and_exits_2(tmp_path):
    data = image_folder(tmp_path / "data", duplicate=True)
    completed = train(f"--dataset=folder:{data}", *FOLDER_RUN, "--unlabeled_batch_size=64",
                      "--check_data")  # fmt: skip
    assert completed.returncode == 2
    problems = [line for line in error_lines(completed.stderr) if "problem:" in line]
    assert len(problems) == 2, completed.stderr
    assert (
        "40 images in unlabeled/ do not fill one batch of --unlabeled_batch_size=64"
        in (problems[0])
    )
    assert "1 labeled training images also appear in the evaluation set" in problems[1]


@pytest.mark.slow
@pytest.mark.jax_only  # the command line, backend-independent: checked once
def test_all_labels_without_a_test_folder_needs_a_validation_split(tmp_path):
    data = image_folder(tmp_path / "data", with_test=False)
    refused = train(f"--dataset=folder:{data}", *FOLDER_RUN, f"--model_dir={tmp_path / 'a'}")
    assert refused.returncode == 2
    assert "has no test images" in error_lines(refused.stderr)[-1]
    assert "--validation_fraction=F" in error_lines(refused.stderr)[-1]
    completed = train(f"--dataset=folder:{data}", *FOLDER_RUN, "--validation_fraction=0.34",
                      "--epochs=1", f"--model_dir={tmp_path / 'b'}")  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    results = json.load(open(tmp_path / "b" / "results.json"))
    # round(0.34 x 6) = 2 of each class's 6 held out; 4 of each labeled.
    assert (results["num_labeled"], results["num_unlabeled"]) == (8, 40)
    assert results["evaluation_set"].startswith("validation split: 0.34 of each class")
    dataset = json.load(open(tmp_path / "b" / "dataset.json"))
    assert (dataset["num_validation"], dataset["num_test"]) == (4, 0)
    # Monitored on the validation split (val_* in the history); no test set to report.
    assert results["teacher_validation_error"] is not None
    assert results["teacher_test_error"] is None
    assert results["teacher_best_validation_error"] is not None
    history = (tmp_path / "b" / "history.csv").read_text().splitlines()[0].split(",")
    assert {"val_teacher_accuracy", "teacher_validation_error"} <= set(history)
    assert "teacher_test_error" not in history


def test_help_exits_0_for_every_command_and_the_library_module_names_the_command():
    from lcmt_tf.cli.main import COMMANDS

    for command in [[name] for name in COMMANDS] + [["experiment", "table"]]:
        completed = subprocess.run(
            [sys.executable, "-m", "lcmt_tf", *command, "--help"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert completed.returncode == 0, (command, completed.stderr[-2000:])
        assert "--" in completed.stdout, command  # its flags
    library = subprocess.run(
        [sys.executable, "-m", "lcmt_tf.train", "--help"], capture_output=True, text=True
    )
    assert library.returncode == 2
    assert error_lines(library.stderr)[-1].endswith(
        "the command is `lcmt train` (or `python -m lcmt_tf train`)"
    )


def test_check_devices_says_what_a_run_trains_on():
    if keras.backend.backend() == "torch":
        pytest.skip("torch trains on one device: tests/test_torch.py checks its report")
    completed = subprocess.run(
        [sys.executable, "-m", "lcmt_tf", "check-devices", "--num_cpu_devices=2"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = dict(line.split(": ", 1) for line in completed.stdout.splitlines() if ": " in line)
    devices = lines["devices Keras sees"].split(", ")
    # the accelerators when there are any, else the host CPU split in two
    assert len(devices) == 2 or not devices[0].startswith("cpu"), devices
    assert f"--distribute=mirrored trains on {len(devices)} replica(s)" in completed.stdout
    assert f"--distribute=none trains on {devices[0]}" in completed.stdout
    stray = subprocess.run(
        [sys.executable, "-m", "lcmt_tf", "check-devices", "gpu"], capture_output=True, text=True
    )
    assert stray.returncode == 2 and "unexpected arguments" in error_lines(stray.stderr)[-1]
