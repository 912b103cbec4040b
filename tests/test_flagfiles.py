"""Flag files found by name, includes next to their includer, and the configuration
the train command resolves, in-process (lcmt_tf.flagfiles) and as the commands run it."""

import json
import os
import subprocess
import sys

import pytest
from absl import flags

from lcmt_tf.errors import UserInputError
from lcmt_tf.experiments.runner import flag_file, flag_files, resolve
from lcmt_tf.flagfiles import (
    PACKAGED_FLAGS_DIR,
    expand_flagfiles,
    find_flag_file,
    packaged_settings,
    train_config,
)

from conftest import ROOT, error_lines


def write(path, *lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_checkouts_flags_folder_is_the_packaged_one():
    assert os.path.samefile(os.path.join(ROOT, "flags"), PACKAGED_FLAGS_DIR)
    names = sorted(name[:-4] for name in os.listdir(os.path.join(ROOT, "flags")))
    assert packaged_settings() == names and "digits" in names and "cifar10_4000_mt" in names


def test_a_setting_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expected = os.path.join(PACKAGED_FLAGS_DIR, "digits.txt")
    assert find_flag_file("digits") == expected
    assert find_flag_file("digits.txt") == expected
    with pytest.raises(UserInputError, match="flags/digits.txt: no such flag file"):
        find_flag_file("flags/digits.txt")  # a path means that path, relative to here


def test_a_file_in_the_working_directory_wins_over_a_setting_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "digits.txt", "--epochs=3")
    assert find_flag_file("digits.txt") == str(tmp_path / "digits.txt")


def test_an_include_resolves_next_to_the_including_file_not_the_working_directory(
    tmp_path, monkeypatch
):
    write(tmp_path / "mine" / "base.txt", "--epochs=7", "--lc_epsilon=0.3")
    top = write(tmp_path / "mine" / "top.txt", "# my setting", "--flagfile=base.txt", "--epochs=9")
    elsewhere = tmp_path / "elsewhere"
    write(elsewhere / "base.txt", "--epochs=1", "--lc_epsilon=99")  # must not be read
    monkeypatch.chdir(elsewhere)
    assert expand_flagfiles([f"--flagfile={top}", "--seed=4"]) == [
        "--epochs=7", "--lc_epsilon=0.3", "--epochs=9", "--seed=4"
    ]  # fmt: skip
    config = train_config([f"--flagfile={top}", "--seed=4"])
    assert (config.epochs, config.lc_epsilon, config.seed) == (9, 0.3, 4)


def test_a_users_flag_file_can_include_an_installed_setting_by_name(tmp_path):
    mine = write(tmp_path / "mine.txt", "--flagfile=digits", "--epochs=120")
    config = train_config([f"--flagfile={mine}", "--lr_decay_epochs=5"])
    digits = train_config(["--flagfile=digits"])
    assert config.epochs == 120 and config.lr_decay_epochs == 5
    assert config.num_labels == digits.num_labels and config.model == digits.model


def test_expansion_reads_files_as_absl_does(tmp_path, monkeypatch):
    """The reference: absl's own --flagfile parsing of a file without includes."""
    path = write(
        tmp_path / "f.txt", "# comment", "// comment too", "", "  --epochs=5  ", "--seed=2",
        "--epochs=6", "--lc_epsilon=0.25",
    )  # fmt: skip
    reference = flags.FlagValues()
    flags.DEFINE_integer("epochs", 0, "", flag_values=reference)
    flags.DEFINE_integer("seed", 0, "", flag_values=reference)
    flags.DEFINE_float("lc_epsilon", 0.0, "", flag_values=reference)
    reference(["prog", f"--flagfile={path}", "--seed=3"])
    config = train_config([f"--flagfile={path}", "--seed=3"])
    assert (config.epochs, config.seed, config.lc_epsilon) == (
        reference.epochs, reference.seed, reference.lc_epsilon
    ) == (6, 3, 0.25)  # fmt: skip
    assert expand_flagfiles(["--flagfile", str(path)]) == expand_flagfiles([f"--flagfile={path}"])


def test_circular_and_missing_includes_are_one_clear_error(tmp_path):
    write(tmp_path / "a.txt", "--flagfile=b.txt")
    write(tmp_path / "b.txt", "--flagfile=a.txt")
    with pytest.raises(UserInputError, match=r"include each other: a.txt -> b.txt -> a.txt"):
        expand_flagfiles([f"--flagfile={tmp_path / 'a.txt'}"])
    write(tmp_path / "c.txt", "--flagfile=nowhere.txt")
    with pytest.raises(UserInputError, match="nowhere.txt: no such flag file .next to the file"):
        expand_flagfiles([f"--flagfile={tmp_path / 'c.txt'}"])
    with pytest.raises(UserInputError, match="--epochs=x"):
        train_config(["--epochs=x"])
    with pytest.raises(UserInputError, match="unexpected arguments"):
        train_config(["stray"])


def test_experiment_settings_come_from_the_users_folder_first(tmp_path):
    write(tmp_path / "digits_mt.txt", "--flagfile=digits", "--lc_weight=0", "--epochs=90")
    files = flag_files("digits", ("mt", "mtlc"), [str(tmp_path)])
    assert files["mt"] == str(tmp_path / "digits_mt.txt")
    assert files["mtlc"] == os.path.join(PACKAGED_FLAGS_DIR, "digits.txt")
    assert resolve([f"--flagfile={files['mt']}"])["epochs"] == 90
    assert flag_file("digits", "mt") == os.path.join(PACKAGED_FLAGS_DIR, "digits_mt.txt")
    with pytest.raises(UserInputError, match="mine_mt.txt is not in"):
        flag_files("mine", ("mt", "mtlc"), [str(tmp_path)])


@pytest.mark.tensorflow_only
def test_every_command_form_resolves_the_same_configuration(tmp_path):
    """scripts/train.py in the checkout, python -m lcmt_tf, python -m lcmt_tf.cli.train
    from another folder, and the library function: one configuration."""
    script = os.path.join(ROOT, "scripts", "train.py")
    forms = [
        ([sys.executable, script, "--flagfile=flags/digits.txt"], ROOT),
        ([sys.executable, "-m", "lcmt_tf", "train", "--flagfile=digits"], tmp_path),
        ([sys.executable, "-m", "lcmt_tf.cli.train", "--flagfile=digits.txt"], tmp_path),
    ]  # fmt: skip
    outputs = []
    for command, cwd in forms:
        completed = subprocess.run(
            [*command, "--epochs=110", "--dry_run"], cwd=cwd, capture_output=True, text=True
        )
        assert completed.returncode == 0, completed.stderr
        outputs.append(json.loads(completed.stdout))
    assert outputs[0] == outputs[1] == outputs[2]
    assert {**train_config(["--flagfile=digits", "--epochs=110"]).to_dict(), "dry_run": True} == (
        outputs[0]
    )
    missing = subprocess.run(
        [sys.executable, "-m", "lcmt_tf", "train", "--flagfile=nope"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert missing.returncode == 2
    assert error_lines(missing.stderr) == [
        "lcmt train: error: --flagfile=nope: no such flag file; installed settings, usable by "
        f"name: {', '.join(packaged_settings())}"
    ]
