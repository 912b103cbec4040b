"""Run directories that guard themselves, tried as users and their machines treat them:
every file corrupted in turn, two trainings at once, signals to train and to
experiment, a full disk, hostile images, --overwrite and a directory without its
config. Each fault ends with one line and a documented exit status, changes no file
the user had, and rerunning the original command continues from the last good state.

Backend-independent: checked once, in the JAX suite (its runs train on JAX), except
the export, which needs TensorFlow.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from lcmt_tf.errors import UserInputError
from lcmt_tf.files import atomic_write_json

from conftest import NO_STARTUP_CHECK, ROOT, damage, error_lines, one_line, snapshot_of, train

pytestmark = pytest.mark.jax_only

QUICK = [
    "--flagfile=digits", "--width=0.25", "--epochs=2", "--lc_start_epoch=1",
    "--lr_decay_epochs=1", "--keep_epochs=1", "--eval_every=1", "--verbose=2", NO_STARTUP_CHECK,
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 2-epoch digits run with its epoch-1 snapshot, trained once."""
    model_dir = tmp_path_factory.mktemp("trained") / "run"
    completed = train(*QUICK, f"--model_dir={model_dir}")
    assert completed.returncode == 0, completed.stderr[-2000:]
    return model_dir


@pytest.fixture
def run_copy(trained, tmp_path):
    """A copy of the trained run, with a file of the user's own in it."""
    model_dir = tmp_path / "run"
    shutil.copytree(trained, model_dir)
    (model_dir / "my_notes.txt").write_text("the user's own file\n")
    return model_dir


@pytest.mark.parametrize("how", ["empty", "random"])
def test_an_empty_or_random_training_state_is_refused_not_restarted(run_copy, how):
    from lcmt_tf.flagfiles import train_config
    from lcmt_tf.train import run

    (run_copy / "results.json").unlink()
    damage(run_copy / "training_state.npz", how)
    before = snapshot_of(run_copy)
    with pytest.raises(UserInputError) as error:
        run(train_config([*QUICK, f"--model_dir={run_copy}"]))
    assert str(error.value).startswith(
        f"cannot read the training state {run_copy / 'training_state.npz'} ("
    )
    assert "\n" not in str(error.value) and "the last good copy is" in str(error.value)
    assert snapshot_of(run_copy) == before


@pytest.mark.slow
def test_a_cut_off_training_state_is_named_with_its_last_good_copy_and_resumes_from_it(run_copy):
    """As a user meets it: one line, exit 2, nothing changed; then doing what the line
    says resumes from the last good state and ends the run."""
    (run_copy / "results.json").unlink()  # an unfinished run, so that rerunning resumes
    state = run_copy / "training_state.npz"
    damage(state, "truncated")
    before = snapshot_of(run_copy)
    line = one_line(train(*QUICK, f"--model_dir={run_copy}"))
    assert line.startswith(f"train.py: error: cannot read the training state {state} (")
    snapshot = run_copy / "training_state_epoch1.npz"
    assert line.endswith(
        f"the last good copy is {snapshot} (after epoch 1): copy it over {state} and rerun "
        "the training to resume from there, or train anew (lcmt train --overwrite moves the "
        "old files aside)"
    )
    assert snapshot_of(run_copy) == before  # nothing changed, nothing deleted
    shutil.copyfile(snapshot, state)
    completed = train(*QUICK, f"--model_dir={run_copy}")
    assert completed.returncode == 0, completed.stderr[-2000:]
    results = json.loads((run_copy / "results.json").read_text())
    assert results["resumed_from_epoch"] == 1 and results["epochs_run"] == 2
    history = (run_copy / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["1", "2"]  # every epoch once
    assert (run_copy / "my_notes.txt").read_text() == "the user's own file\n"


def test_a_damaged_config_is_named_and_left_alone(run_copy):
    from lcmt_tf.flagfiles import train_config
    from lcmt_tf.run_dir.lifecycle import check_run_directory

    damage(run_copy / "config.json", "truncated")
    before = snapshot_of(run_copy)
    with pytest.raises(UserInputError, match=f"cannot read {run_copy / 'config.json'} "):
        check_run_directory(train_config([*QUICK, f"--model_dir={run_copy}"]))
    assert snapshot_of(run_copy) == before


@pytest.mark.parametrize("name", ["dataset.json", "labeled_indices.json", "model.keras"])
def test_damaged_files_of_a_trained_run_are_named_by_the_commands_that_read_them(run_copy, name):
    from lcmt_tf.inference import load_run

    damage(run_copy / name, "truncated")
    trained_run = load_run(str(run_copy)) if name != "model.keras" else None
    with pytest.raises(UserInputError) as error:
        if name == "dataset.json":
            trained_run.class_names
        elif name == "labeled_indices.json":
            trained_run.labeled_indices()
        else:
            load_run(str(run_copy))
    message = str(error.value)
    assert "\n" not in message and str(run_copy / name) in message
    assert "rerun" in message or "move it out of the run directory" in message


@pytest.mark.slow
def test_a_cut_off_history_keeps_its_good_rows_on_resume(run_copy, caplog):
    from lcmt_tf.flagfiles import train_config
    from lcmt_tf.train import run

    (run_copy / "results.json").unlink()
    shutil.copyfile(run_copy / "training_state_epoch1.npz", run_copy / "training_state.npz")
    history = run_copy / "history.csv"
    text = history.read_text()
    rows = text.splitlines()
    # Epoch 1's row cut off half-way, as a crash mid-write left it before writes were atomic.
    history.write_text("\n".join([rows[0], rows[1][: len(rows[1]) // 2]]) + "\n")
    results = run(train_config([*QUICK, f"--model_dir={run_copy}", "--verbose=0"]))
    assert results["completed"] and results["resumed_from_epoch"] == 1
    assert [row.split(",")[0] for row in history.read_text().splitlines()[1:]] == ["2"]
    assert "dropped 1 damaged rows" in caplog.text


def test_a_damaged_folder_cache_is_rebuilt_with_a_warning(tmp_path, caplog):
    from PIL import Image

    from lcmt_tf.data.folders import load_folder

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in ("a", "b"):
            os.makedirs(tmp_path / "data" / split / label)
            for index in range(3):
                pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "data" / split / label / f"{index}.png")
    cache = tmp_path / "cache"
    first = load_folder(str(tmp_path / "data"), cache_dir=str(cache))
    (cached,) = cache.iterdir()
    damage(cached / "x_train.npy", "truncated")
    second = load_folder(str(tmp_path / "data"), cache_dir=str(cache))
    np.testing.assert_array_equal(first[0], second[0])
    assert f"The decoded-image cache {cached} is damaged" in caplog.text
    third = load_folder(str(tmp_path / "data"), cache_dir=str(cache))  # rebuilt: reads again
    np.testing.assert_array_equal(first[0], third[0])


def test_a_directory_with_a_state_but_no_config_is_refused(run_copy):
    from lcmt_tf.flagfiles import train_config
    from lcmt_tf.run_dir.lifecycle import check_run_directory

    (run_copy / "config.json").unlink()
    before = snapshot_of(run_copy)
    with pytest.raises(UserInputError) as error:
        check_run_directory(train_config([*QUICK, "--lr=0.1", f"--model_dir={run_copy}"]))
    assert str(error.value).startswith(
        f"--model_dir={run_copy} holds a run's files (labeled_indices.json, dataset.json, "
        "training_state.npz) but no config.json"
    )
    assert snapshot_of(run_copy) == before


def test_overwrite_moves_the_old_run_aside_and_keeps_the_users_files(run_copy):
    before = snapshot_of(run_copy)
    completed = train(*QUICK, "--lr=0.1", "--overwrite", f"--model_dir={run_copy}")
    assert completed.returncode == 0, completed.stderr[-2000:]
    (aside,) = [path for path in run_copy.iterdir() if path.name.startswith("replaced-")]
    moved = snapshot_of(aside)
    for name, content in before.items():
        if name == "my_notes.txt":
            assert (run_copy / name).read_bytes() == content
        elif name != ".lock":
            assert moved[name] == content  # every old file, unchanged, moved aside
    assert json.loads((run_copy / "config.json").read_text())["lr"] == 0.1


def test_two_trainings_in_one_directory_and_sigterm(tmp_path):
    """The second training is refused naming the first's pid; SIGTERM stops the first
    with the resume line (exit 143) after its last completed epoch, and frees the
    directory (the damaged-state test shows a rerun finishing a run)."""
    from lcmt_tf.run_dir.lock import RunDirectoryLock

    model_dir = tmp_path / "run"
    args = [*QUICK, "--epochs=400", "--lr_decay_epochs=5", f"--model_dir={model_dir}"]
    first = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "scripts", "train.py"), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (model_dir / "training_state.npz").exists():  # the first epoch is saved
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.2)
        second = train(*args)
        line = one_line(second)
        assert f"is in use by process {first.pid}" in line
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 143
    lines = error_lines(stderr)
    assert lines[-1] == (
        f"train.py: stopped by SIGTERM; rerun the same command to resume from the last "
        f"completed epoch in {model_dir}"
    )
    with np.load(model_dir / "training_state.npz") as archive:
        stopped_at = int(archive["next_epoch"])
    history = (model_dir / "history.csv").read_text().splitlines()
    # Every completed epoch has its row (a row may be ahead of the state by one epoch).
    epochs = [int(row.split(",")[0]) for row in history[1:]]
    assert epochs[:stopped_at] == list(range(1, stopped_at + 1)) and len(epochs) - stopped_at <= 1
    RunDirectoryLock(str(model_dir)).acquire().release()  # the directory is free again


def test_a_signal_that_a_library_swallows_still_stops_the_command():
    from lcmt_tf import cli

    with pytest.raises(cli.Interrupted) as stopped:
        with cli.signals_as_interrupts() as request:
            try:  # what TensorFlow's import does with its bare `except:` clauses
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            except BaseException:
                pass
            with pytest.raises(cli.Interrupted):
                request.check()  # the train command's check after every step
            # Nothing acted on it here: leaving the block still stops the command.
    assert stopped.value.exit_status == 143
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are restored


STUCK_AFTER_A_SWALLOWED_STOP = """
import gc, os, signal, time
from lcmt_tf import cli

def collect(phase, info):  # the signal lands inside a garbage-collection callback,
    if phase == "start":   # as it did inside JAX's _xla_gc_callback
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(100000))  # the handler runs here; Python drops what it raises

with cli.signals_as_interrupts(lambda name: f"stopped by {name}", grace_s=0.5):
    gc.callbacks.append(collect)
    gc.collect()
    gc.callbacks.remove(collect)
    print("swallowed", flush=True)
    time.sleep(300)  # a main thread that reaches no safe point (a long compilation)
"""


def test_a_stop_swallowed_in_a_gc_callback_still_ends_a_stuck_command():
    completed = subprocess.run(
        [sys.executable, "-c", STUCK_AFTER_A_SWALLOWED_STOP],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.stdout == "swallowed\n"  # the exception did not reach the block
    assert "Exception ignored" in completed.stderr and "Interrupted: SIGTERM" in completed.stderr
    assert completed.returncode == 143
    assert completed.stderr.splitlines()[-1] == "-c: stopped by SIGTERM"


def test_removing_temporaries_leaves_every_other_file(tmp_path):
    from lcmt_tf.files import remove_temporaries

    for name in (".tmp-abc.npz", ".tmp-def.json", "notes.tmp-x", "results.json"):
        (tmp_path / name).write_text("x")
    (tmp_path / ".tmp-folder").mkdir()
    assert remove_temporaries(str(tmp_path)) == [".tmp-abc.npz", ".tmp-def.json"]
    assert sorted(os.listdir(tmp_path)) == [".tmp-folder", "notes.tmp-x", "results.json"]


@pytest.mark.slow
def test_sigterm_to_experiment_stops_its_run_and_starts_no_other(tmp_path):
    root = tmp_path / "exp"
    command = [
        sys.executable, os.path.join(ROOT, "scripts", "experiment.py"), "table",
        "--settings=digits", "--seeds=0", f"--root={root}", "--fork", "--set=width=0.25",
        "--set=epochs=60", "--set=lc_start_epoch=50", "--set=lr_decay_epochs=5",
    ]  # fmt: skip
    experiment = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    mt_dir = root / "digits" / "mt" / "seed_0"
    try:
        deadline = time.monotonic() + 120
        while not (mt_dir / "training_state.npz").exists():
            assert experiment.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        child = int((mt_dir / ".lock").read_text())
        experiment.send_signal(signal.SIGTERM)
        _, stderr = experiment.communicate(timeout=120)
    finally:
        experiment.kill()
    assert experiment.returncode == 143
    assert error_lines(stderr)[-1] == (
        "experiment.py: stopped by SIGTERM; the runs it had started stopped after their last "
        "completed epoch and no new run started; rerun the same command to continue"
    )
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # the training it started ended with it
    assert not (root / "digits" / "mtlc").exists()  # and no run started after the signal
    assert "stopped by SIGTERM" in (root / "digits" / "mt" / "seed_0.log").read_text()


@pytest.fixture
def full_filesystem(tmp_path):
    """A 256 KiB tmpfs, where the platform allows mounting one (root on Linux)."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    if made.returncode != 0:
        pytest.skip("cannot mount a small filesystem here")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_while_saving_keeps_the_previous_file(full_filesystem):
    path = full_filesystem / "results.json"
    atomic_write_json(str(path), {"kept": True})
    with pytest.raises(UserInputError) as error:
        atomic_write_json(str(path), {"big": "x" * 400_000})
    assert str(error.value) == (
        f"out of disk space writing {path}: the previous results.json is kept, nothing is "
        "half-written; free space and rerun the same command"
    )
    assert json.loads(path.read_text()) == {"kept": True}
    assert sorted(os.listdir(full_filesystem)) == ["results.json"]  # no temporary left


def test_a_decompression_bomb_is_skipped_by_predict_and_refused_in_training(trained, tmp_path):
    from PIL import Image

    from lcmt_tf.data.folders import read_image
    from lcmt_tf.inference import predict_files

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(images / f"{index}.png")
    bomb = images / "bomb.png"
    Image.new("L", (10000, 10000)).save(bomb)  # about 97 KB on disk, 100 million pixels
    assert bomb.stat().st_size < 200_000
    with pytest.raises(UserInputError, match=r"is 10000x10000 = 100,000,000 pixels, over the"):
        read_image(str(bomb), "L")
    rows, problems = predict_files(str(trained), [str(images)])
    assert sorted(os.path.basename(row["path"]) for row in rows) == ["0.png", "1.png"]
    assert len(problems) == 1 and "bomb.png is 10000x10000" in problems[0]


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    from lcmt_tf.data.folders import read_image

    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    np.testing.assert_array_equal(read_image(str(tmp_path / "deep.png"), "L").ravel(),
                                  [0, 1, 128, 255])  # fmt: skip


def test_output_paths_are_checked_before_any_work(trained, tmp_path):
    from lcmt_tf.files import check_output_path

    with pytest.raises(UserInputError, match="does not exist"):
        check_output_path(str(tmp_path / "no" / "such" / "p.csv"), "--output")
    with pytest.raises(UserInputError, match="is a folder"):
        check_output_path(str(tmp_path), "--output")
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "mine.txt").write_text("keep")
    with pytest.raises(UserInputError, match="already exists; choose another, or pass --overwrite"):
        check_output_path(str(tmp_path / "export"), "--output", directory=True, overwrite=False)
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "one.png")
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "predict.py"), f"--model_dir={trained}",
         f"--images={tmp_path / 'one.png'}", f"--output={tmp_path / 'missing' / 'p.csv'}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert "the folder" in one_line(completed) and time.monotonic() - started < 60


def test_huge_seed_ranges_are_refused_at_parse_time():
    from lcmt_tf.experiments.runner import parse_seeds

    with pytest.raises(UserInputError, match="more than 10000 seeds"):
        parse_seeds("0-99999999")
    assert parse_seeds("0-2,7") == [0, 1, 2, 7]


def test_run_files_get_the_users_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write_json(str(tmp_path / "a.json"), {})
        os.umask(0o002)
        atomic_write_json(str(tmp_path / "a.json"), {"again": 1})  # a replaced file too
    finally:
        os.umask(previous)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o664
