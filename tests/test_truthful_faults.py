"""Nothing a user owns is deleted, no input is dropped without a word, every message
says what is true: each case as a careful user meets it, asserting the message, the
exit status and that every file the user had is unchanged (byte for byte).

Backend-independent command-line behaviour: checked once, in the JAX suite (its runs
train on JAX), except what needs TensorFlow (marked).
"""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest

from lcmt_tf.errors import UserInputError

from conftest import (
    NO_STARTUP_CHECK,
    ROOT,
    damage,
    error_lines,
    one_line,
    snapshot_of,
    train,
    write_digits_folder,
)

pytestmark = pytest.mark.jax_only

QUICK = [
    "--flagfile=digits", "--width=0.25", "--epochs=2", "--lc_start_epoch=1",
    "--lr_decay_epochs=1", "--eval_every=1", "--verbose=0", NO_STARTUP_CHECK,
]  # fmt: skip


def command(name, *args, env=None):
    """`python -m lcmt_tf.cli.NAME` with these arguments, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", f"lcmt_tf.cli.{name}", *args],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-epoch digits run, trained once."""
    model_dir = tmp_path_factory.mktemp("finished") / "run"
    completed = train(*QUICK, f"--model_dir={model_dir}")
    assert completed.returncode == 0, completed.stderr[-2000:]
    return model_dir


@pytest.fixture
def run_copy(finished, tmp_path):
    model_dir = tmp_path / "run"
    shutil.copytree(finished, model_dir)
    (model_dir / "my_notes.txt").write_text("the user's own file\n")
    return model_dir


def small_folder(root, classes=("a", "b"), per_class=3, test=True):
    """train/<class>/ (and test/<class>/) of random 8x8 PNG images."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test") if test else ("train",):
        for name in classes:
            os.makedirs(root / split / name, exist_ok=True)
            for index in range(per_class):
                pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{index}.png")
    return root


def png_header_claiming(path, width, height):
    """A valid PNG whose header says width x height: PIL reads the size without
    decoding a pixel (what a decompression bomb looks like before it is decoded)."""
    from PIL import Image

    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    start = data.index(b"IHDR")
    data[start + 4 : start + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[start : start + 17])) & 0xFFFFFFFF
    data[start + 17 : start + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


# -- an overwrite never deletes what the tool did not write -------------------------


def test_export_overwrite_refuses_a_users_folder_and_deletes_nothing(finished, tmp_path):
    target = tmp_path / "my_folder"
    (target / "sub").mkdir(parents=True)
    (target / "report.txt").write_text("mine")
    (target / "sub" / "data.bin").write_bytes(b"\0\1")
    before = snapshot_of(target)
    # Export writes through TensorFlow whatever backend trained the run.
    line = one_line(
        command(
            "export",
            f"--model_dir={finished}",
            f"--output={target}",
            "--overwrite",
            env={"KERAS_BACKEND": "tensorflow"},
        )
    )
    assert line == (
        f"export.py: error: --output={target} holds files that are not an lcmt export (no "
        "provenance.json of one): --overwrite replaces only a previous export; choose another "
        "--output"
    )
    assert snapshot_of(target) == before


def test_a_previous_export_is_moved_aside_not_deleted(tmp_path):
    from lcmt_tf.exports import check_export_output, move_export_aside

    previous = tmp_path / "exported"
    previous.mkdir()
    (previous / "provenance.json").write_text(json.dumps({"exported_from": "/runs/a"}))
    (previous / "saved_model.pb").write_bytes(b"model")
    before = snapshot_of(previous)
    check_export_output(str(previous), "savedmodel", overwrite=True)  # allowed
    aside = move_export_aside(str(previous), "savedmodel")
    assert not previous.exists() and os.path.basename(aside).startswith("exported.replaced-")
    assert snapshot_of(aside) == before
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"onnx")
    (tmp_path / "model.provenance.json").write_text(json.dumps({"exported_from": "/runs/a"}))
    (tmp_path / "model.class_names.json").write_text("[]")
    aside = move_export_aside(str(onnx), "onnx")
    assert sorted(os.listdir(aside)) == [
        "model.class_names.json", "model.onnx", "model.provenance.json"
    ]  # fmt: skip


# -- every image-reading path, one check; unreadable inputs are one line ------------


def test_a_bomb_beyond_twice_pils_limit_in_a_training_folder_is_one_line(tmp_path):
    data = small_folder(tmp_path / "data")
    png_header_claiming(data / "train" / "a" / "bomb.png", 20_000, 20_000)  # 400 M pixels
    line = one_line(command("check_data", "--flagfile=digits", f"--dataset=folder:{data}",
                            "--num_labels=all", f"--cache_dir={tmp_path / 'cache'}"))  # fmt: skip
    assert line == (
        f"check_data.py: error: image {data / 'train' / 'a' / 'bomb.png'} is 20000x20000 = "
        "400,000,000 pixels, over the limit of 89,478,485 (--max_image_pixels); resize it, or "
        "raise the limit if you trust it"
    )


def test_a_bomb_in_predict_is_named_as_one_not_as_corrupt(finished, tmp_path):
    from lcmt_tf.inference import predict_files

    images = small_folder(tmp_path / "images", classes=("x",), test=False) / "train" / "x"
    png_header_claiming(images / "bomb.png", 20_000, 20_000)
    rows, problems = predict_files(str(finished), [str(images)])
    assert len(rows) == 3 and len(problems) == 1
    assert "bomb.png is 20000x20000 = 400,000,000 pixels, over the limit" in problems[0]
    assert "corrupt" not in problems[0]


@pytest.mark.slow
def test_a_dangling_symlink_in_a_class_folder_is_one_line(tmp_path):
    data = small_folder(tmp_path / "data")
    link = data / "train" / "b" / "gone.png"
    os.symlink(tmp_path / "nowhere.png", link)
    line = one_line(command("check_data", "--flagfile=digits", f"--dataset=folder:{data}",
                            "--num_labels=all", f"--cache_dir={tmp_path / 'cache'}"))  # fmt: skip
    assert line == (
        f"check_data.py: error: image {link} is a broken symbolic link (to "
        f"{tmp_path / 'nowhere.png'}, which does not exist): remove the link or restore its target"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_image_is_one_line(tmp_path):
    data = small_folder(tmp_path / "data")
    locked = data / "train" / "a" / "0.png"
    locked.chmod(0)
    line = one_line(command("check_data", "--flagfile=digits", f"--dataset=folder:{data}",
                            "--num_labels=all", f"--cache_dir={tmp_path / 'cache'}"))  # fmt: skip
    assert line == f"check_data.py: error: cannot read image {locked}: permission denied"


@pytest.fixture
def read_only_copy(finished, tmp_path):
    """A read-only view of the finished run (a read-only bind mount: root can write to
    any folder it owns), where the platform allows mounting."""
    view = tmp_path / "view"
    view.mkdir()
    bound = subprocess.run(["mount", "--bind", str(finished), str(view)], capture_output=True)
    if bound.returncode != 0:
        pytest.skip("cannot mount here")
    remounted = subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], capture_output=True)
    if remounted.returncode != 0:
        subprocess.run(["umount", str(view)])
        pytest.skip("cannot remount read-only here")
    yield view
    subprocess.run(["umount", str(view)], check=True)


@pytest.mark.slow
def test_evaluate_on_a_read_only_run_prints_its_figures_and_writes_nothing(read_only_copy):
    before = snapshot_of(read_only_copy)
    completed = command("evaluate", f"--model_dir={read_only_copy}")
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(completed.stdout)
    assert 0 <= result["teacher_test_error"] <= 100
    assert "is read-only: evaluation.json and confusion.png were not written" in completed.stderr
    assert snapshot_of(read_only_copy) == before


# -- nothing dropped without a word -----------------------------------------------


def test_the_data_summary_names_what_it_leaves_out(tmp_path):
    data = small_folder(tmp_path / "data", classes=("a", "b", "c"))
    shutil.rmtree(data / "train" / "c")
    (data / "train" / "c").mkdir()
    small_folder(data / "onlyone", classes=("c",), per_class=1, test=False)
    shutil.move(data / "onlyone" / "train" / "c" / "0.png", data / "train" / "c" / "0.png")
    shutil.rmtree(data / "onlyone")
    (data / "test" / "extra").mkdir()  # a test class that train/ lacks
    (data / "train" / "a" / "notes.txt").write_text("not an image")
    shutil.copytree(
        data / "train" / "a", data / "unlabeled", ignore=shutil.ignore_patterns("*.txt")
    )
    before = snapshot_of(data)
    completed = command("check_data", "--flagfile=digits", f"--dataset=folder:{data}",
                        "--num_labels=all", "--unlabeled_batch_size=2",
                        f"--cache_dir={tmp_path / 'cache'}")  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    left_out = [line for line in completed.stdout.splitlines() if line.startswith("left out")]
    assert left_out == [
        "left out or thin: test/ has 1 class folder(s) that train/ lacks, left out of the "
        "evaluation: extra",
        "left out or thin: 1 file(s) that are not images (.png, .jpg, .jpeg, .bmp, .webp) were "
        f"skipped, e.g. {data / 'train' / 'a' / 'notes.txt'}",
        "left out or thin: class c has 1 training image(s), fewer than 2",
    ]
    assert snapshot_of(data) == before
    (data / "train" / "c" / "0.png").unlink()  # now a class with none
    line = one_line(command("check_data", "--flagfile=digits", f"--dataset=folder:{data}",
                            "--num_labels=all", f"--cache_dir={tmp_path / 'cache'}"))  # fmt: skip
    assert line.startswith(f"check_data.py: error: {data / 'train' / 'c'} has no images")


@pytest.mark.slow
def test_npz_class_names_shorter_than_the_classes_and_a_text_file_named_npz(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 8, 8, 1), dtype=np.uint8)
    labels = np.arange(12) % 3
    path = tmp_path / "short.npz"
    np.savez(path, x_train=x, y_train=labels, x_test=x, y_test=labels, class_names=["a", "b"])
    line = one_line(command("check_data", "--flagfile=digits", f"--dataset=npz:{path}",
                            "--num_labels=all"))  # fmt: skip
    assert line == (
        f"check_data.py: error: {path}: class_names has 2 names, but the labels reach 2 "
        "(3 classes): give one name per class"
    )
    text = tmp_path / "table.npz"
    text.write_text("x,y\n1,2\n")
    line = one_line(command("check_data", "--flagfile=digits", f"--dataset=npz:{text}",
                            "--num_labels=all"))  # fmt: skip
    assert line == (
        f"check_data.py: error: {text} is not an .npz archive (the zip file numpy.savez "
        "writes, with x_train, y_train, x_test, y_test)"
    )


# -- one owner per experiment root ------------------------------------------------


def test_a_second_experiment_on_one_root_is_refused_before_it_starts_anything(tmp_path):
    from lcmt_tf.run_dir.lock import RunDirectoryLock

    root = tmp_path / "experiment"
    held = RunDirectoryLock(str(root), "--root", "an experiment command").acquire()
    try:
        before = snapshot_of(root)
        line = one_line(command("experiment", "table", "--settings=digits", "--seeds=0",
                                f"--root={root}", "--set=width=0.25"))  # fmt: skip
    finally:
        held.release()
    assert line == (
        f"experiment.py: error: --root={root} is in use by process {os.getpid()} (an "
        f"experiment command holds {root / '.lock'}); wait for it to end, or stop it, before "
        "you run experiments in it"
    )
    assert snapshot_of(root) == before  # no table, no log, no run


# -- a stopped JAX training exits with its status, and resumes exactly ------------------


def wait_for(predicate, process, seconds=180):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert process.poll() is None, process.stderr.read()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)


def history_rows(model_dir) -> int:
    try:
        return len((model_dir / "history.csv").read_text().splitlines()) - 1
    except FileNotFoundError:
        return 0


LONG = [*QUICK[:2], "--epochs=6", "--lc_start_epoch=3", "--lr_decay_epochs=2",
        "--eval_every=2", "--verbose=0", "--deterministic", NO_STARTUP_CHECK]  # fmt: skip


@pytest.mark.slow
def test_stops_at_events_of_a_jax_run_exit_with_their_status_and_resume_exactly(tmp_path):
    """SIGINT and SIGTERM at three moments (during the first compilation, just after an
    epoch's row, during an evaluation epoch): each exit is 130 or 143, never a crash,
    and the resumed run ends where an uninterrupted one ends."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    model_dir = tmp_path / "stopped"
    script = os.path.join(ROOT, "scripts", "train.py")
    moments = [
        (signal.SIGINT, lambda: (model_dir / "config.json").exists()),  # compiling the step
        (signal.SIGTERM, lambda: history_rows(model_dir) >= 1),  # right after an epoch
        (signal.SIGINT, lambda: history_rows(model_dir) >= 3),  # in the evaluated epoch 4
    ]
    for number, moment in moments:
        process = subprocess.Popen(
            [sys.executable, script, *LONG, f"--model_dir={model_dir}"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_for(moment, process)
            process.send_signal(number)
            _, stderr = process.communicate(timeout=120)
        finally:
            process.kill()
        assert process.returncode == 128 + number, stderr[-2000:]
        assert "Segmentation fault" not in stderr
        assert error_lines(stderr)[-1].startswith(f"train.py: stopped by {number.name}; rerun")
    finished = train(*LONG, f"--model_dir={model_dir}", env={"KERAS_BACKEND": "jax"})
    assert finished.returncode == 0, finished.stderr[-2000:]
    reference = train(*LONG, f"--model_dir={tmp_path / 'reference'}", env={"KERAS_BACKEND": "jax"})
    assert reference.returncode == 0, reference.stderr[-2000:]
    with np.load(model_dir / "training_state.npz") as stopped_state:
        with np.load(tmp_path / "reference" / "training_state.npz") as uninterrupted:
            for key in uninterrupted.files:
                if key.startswith("variable/"):
                    np.testing.assert_allclose(
                        stopped_state[key], uninterrupted[key], atol=1e-6, err_msg=key
                    )


# -- messages that tell the truth ---------------------------------------------------


@pytest.mark.slow
def test_a_non_finite_loss_in_the_first_epoch_says_that_no_state_was_kept(tmp_path):
    completed = train(*QUICK, "--consistency_weight=1e38", "--consistency_rampup_epochs=0",
                      f"--model_dir={tmp_path / 'run'}")  # fmt: skip
    assert completed.returncode == 1, completed.stderr[-2000:]
    assert "no epoch completed before it, so no state was kept" in completed.stdout
    assert "last good checkpoint" not in completed.stdout + completed.stderr
    assert not (tmp_path / "run" / "training_state.npz").exists()


@pytest.mark.parametrize(
    "case",
    ["a file as run directory", "a folder as flag file", "a damaged model.keras"],
)
def test_each_message_names_what_is_wrong(case, run_copy, tmp_path):
    if case == "a file as run directory":
        given = tmp_path / "results.json"
        given.write_text("{}")
        line = one_line(command("evaluate", f"--model_dir={given}"))
        assert (
            line == f"evaluate.py: error: --model_dir={given} is a file; it names a run directory"
        )
        return
    if case == "a folder as flag file":
        line = one_line(train(f"--flagfile={tmp_path}"))
        assert line == (
            f"train.py: error: --flagfile={tmp_path} is a folder; it names a flag file (one "
            "--flag=value per line) or an installed setting"
        )
        return
    damage(run_copy / "model.keras", "truncated")
    before = snapshot_of(run_copy)
    line = one_line(command("evaluate", f"--model_dir={run_copy}"))
    assert line.startswith(
        f"evaluate.py: error: {run_copy / 'model.keras'} is damaged (not a readable .keras "
        "archive: "
    )
    assert line.endswith(
        "move it out of the run directory to use training_state.npz (the state after the last "
        "epoch) instead"
    )
    assert "File not found" not in line and "--overwrite" not in line
    assert snapshot_of(run_copy) == before


def test_rerunning_a_finished_run_says_so_and_changes_nothing(run_copy):
    before = snapshot_of(run_copy)
    completed = train(*QUICK, f"--model_dir={run_copy}")
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert f"{run_copy} is a finished run; nothing was trained or changed:" in completed.stdout
    assert snapshot_of(run_copy) == before


@pytest.mark.parametrize(
    "name, how",
    [
        ("results.json", "truncated"),
        ("labeled_indices.json", "truncated"),
        ("history.csv", "garbage row"),
        ("history.csv", "cut row"),
    ],
)
def test_a_damaged_file_of_a_finished_run_is_named_never_rewritten(run_copy, name, how):
    path = run_copy / name
    if how == "truncated":
        damage(path, "truncated")
    else:
        rows = path.read_text().splitlines()
        rows[-1] = "§§§ not a row" if how == "garbage row" else rows[-1][: len(rows[-1]) // 2]
        path.write_text("\n".join(rows) + "\n")
    before = snapshot_of(run_copy)
    line = one_line(train(*QUICK, f"--model_dir={run_copy}"))
    assert line.startswith(f"train.py: error: {path} of the finished run is damaged (")
    assert line.endswith(
        "nothing was changed: restore it from a copy, or remove it and rerun to write it again "
        "from the run's state, or train anew (--overwrite moves the old files aside)"
    )
    assert snapshot_of(run_copy) == before


def test_a_resumed_run_names_a_damaged_labeled_split_instead_of_rewriting_it(run_copy):
    (run_copy / "results.json").unlink()  # unfinished: a rerun resumes
    damage(run_copy / "labeled_indices.json", "truncated")
    before = snapshot_of(run_copy)
    line = one_line(train(*QUICK, f"--model_dir={run_copy}"))
    assert line.startswith(
        f"train.py: error: {run_copy / 'labeled_indices.json'} of the run is damaged ("
    )
    assert snapshot_of(run_copy) == before


# -- the collapse guard, both sides ------------------------------------------------


@pytest.mark.slow
def test_a_collapse_of_the_predictions_is_caught_and_reported(tmp_path):
    completed = train(*QUICK[:2], "--epochs=4", "--lc_start_epoch=1", "--lr_decay_epochs=1",
                      "--lc_weight=1e6", "--lc_epsilon=100", "--eval_every=1", "--verbose=0",
                      NO_STARTUP_CHECK, f"--model_dir={tmp_path / 'run'}")  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["collapse"] is not None and results["collapse"]["at_the_end"]
    assert "train.py: warning: the features collapsed in" in completed.stderr


def test_a_healthy_run_does_not_trip_the_collapse_guard(finished):
    import csv

    with open(finished / "history.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [float(row["collapsed"]) for row in rows] == [0.0] * len(rows)
    assert min(float(row["prediction_balance"]) for row in rows[1:]) > 0.5
    assert json.loads((finished / "results.json").read_text())["collapse"] is None


def test_the_collapse_monitor_on_logged_values():
    from lcmt_tf.callbacks import CollapseMonitor

    monitor = CollapseMonitor()
    healthy = [(0.4, 0.6), (0.5, 0.9), (0.5, 0.95)]  # (feature spread, prediction balance)
    for epoch, (spread, balance) in enumerate(healthy):
        logs = {"feature_spread": spread, "prediction_balance": balance}
        monitor.on_epoch_end(epoch, logs)
        assert logs["collapsed"] == 0.0
    logs = {"feature_spread": 0.45, "prediction_balance": 0.05}  # one class for every image
    monitor.on_epoch_end(3, logs)
    assert logs["collapsed"] == 1.0 and logs["prediction_balance_ratio"] == pytest.approx(
        0.05 / 0.95
    )
    assert monitor.summary(4) == {"first_epoch": 4, "epochs": 1, "at_the_end": True}
    monitor.on_epoch_end(4, {"feature_spread": 0.01, "prediction_balance": 0.9})  # spread
    assert monitor.collapsed_epochs == [4, 5]


def test_prediction_balance_against_numpy():
    from keras import ops

    from lcmt_tf.losses import prediction_balance

    logits = np.array([[3, 0, 0], [0, 2, 0], [5, 1, 0], [0, 0, 1]], np.float32)
    shares = np.array([2, 1, 1]) / 4
    expected = -(shares * np.log(shares)).sum() / np.log(3)
    assert float(ops.convert_to_numpy(prediction_balance(logits))) == pytest.approx(expected)
    one_class = np.tile([[0, 4, 1]], (5, 1)).astype(np.float32)
    assert float(ops.convert_to_numpy(prediction_balance(one_class))) == pytest.approx(
        0.0, abs=1e-6
    )


def test_unreadable_user_input_errors_are_unchanged_for_digits_folder(tmp_path):
    """The practitioner's folder still reads cleanly (no notes) after all these checks."""
    from lcmt_tf.data.folders import folder_listing

    write_digits_folder(tmp_path)
    listing = folder_listing(str(tmp_path))
    assert listing["notes"] == [] and len(listing["train"]) == 50


def test_a_user_input_error_type_is_what_library_callers_catch(tmp_path):
    from lcmt_tf.data.folders import image_files

    os.symlink(tmp_path / "missing.png", tmp_path / "link.png")
    with pytest.raises(UserInputError, match="broken symbolic link"):
        image_files(str(tmp_path))
