"""experiment tune: the search is judged on the validation split only, the chosen
setting is confirmed on fresh seeds. The search's logic runs here on stand-in runs
that write results.json (no training); the command line on real digits runs."""

import json
import os
import subprocess
import sys

import pytest

from lcmt_tf.errors import UserInputError
from lcmt_tf.experiments import tune
from lcmt_tf.files import atomic_write_json

from conftest import NO_STARTUP_CHECK, ROOT

pytest.importorskip("optuna")

SPACE = ["lc_weight=log:1:30", "lc_start_epoch=choice:20|40"]
VALIDATION = ["--set=validation_fraction=0.2"]


def plan(tmp_path, **changes):
    arguments = dict(
        setting="digits", root=str(tmp_path), space=tune.parse_space(SPACE),
        tune_seeds=[0, 1], seeds=[5, 6, 7], overrides=["validation_fraction=0.2"], fork=True,
    )  # fmt: skip
    return tune.plan_tuning(**{**arguments, **changes})


def stand_in_runs(runs, parallel):
    """Writes each run's results.json as if it had trained: the validation error is
    lowest near lc_weight 3, the test error lowest near lc_weight 30, so a search that
    looked at the test error would choose differently."""
    for run in runs:
        args = dict(arg[2:].split("=", 1) for arg in run.args if arg.startswith("--"))
        weight = float(args.get("lc_weight", 0.0))
        results = {
            "completed": True,
            "teacher_validation_error": 5.0 + abs(weight - 3.0) + 0.1 * run.seed,
            "teacher_test_error": 20.0 - 0.5 * weight + 0.1 * run.seed,
        }
        os.makedirs(run.model_dir, exist_ok=True)
        atomic_write_json(os.path.join(run.model_dir, "results.json"), results)


def test_the_search_chooses_on_the_validation_error_and_confirms_on_fresh_seeds(tmp_path):
    summary, paths = tune.tune(plan(tmp_path), trials=6, parallel=2, run=stand_in_runs)
    trials = [trial for trial in summary["trials"] if trial["state"] == "COMPLETE"]
    assert len(trials) >= 6
    best = min(trials, key=lambda trial: trial["teacher_validation_error"])
    assert summary["best"]["number"] == best["number"]
    for trial in trials:  # the objective: the mean validation error over the tuning seeds
        weight = trial["params"]["lc_weight"]
        assert trial["teacher_validation_error"] == pytest.approx(5.05 + abs(weight - 3.0))
    # Every trial trained both tuning seeds, forked from their Mean Teacher runs.
    trial_dir = tmp_path / "digits" / "tune" / f"trial_{best['number']}" / "seed_1"
    assert (trial_dir / "results.json").exists()
    confirmation = summary["confirmation"]
    assert confirmation["seeds"] == [5, 6, 7]
    weight = best["params"]["lc_weight"]
    expected = [(20.0 - 0.5 * weight) - 20.0] * 3  # MT+LC - MT, seed by seed
    assert confirmation["paired"]["differences"] == pytest.approx(expected)
    assert json.load(open(paths[0]))["best"]["params"] == best["params"]
    # Rerun: the finished search is not repeated.
    again, _ = tune.tune(plan(tmp_path), trials=6, parallel=2, run=stand_in_runs)
    assert len(again["trials"]) == len(summary["trials"])


def test_a_fixmatch_tuning_names_its_methods(tmp_path):
    def fixmatch_runs(runs, parallel):
        stand_in_runs(runs, parallel)
        for run in runs:
            path = os.path.join(run.model_dir, "results.json")
            results = json.load(open(path))
            atomic_write_json(path, {**results, "config": {"method": "fixmatch"}})

    setting = plan(tmp_path, setting="digits_fixmatch", tune_seeds=[0], seeds=[5])
    summary, paths = tune.tune(setting, trials=2, run=fixmatch_runs)
    assert summary["confirmation"]["method_names"] == {"mt": "FixMatch", "mtlc": "FixMatch + LC"}
    assert (
        "| FixMatch | FixMatch + LC (chosen) | with LC − without, paired |" in open(paths[1]).read()
    )


def test_a_tie_goes_to_the_least_local_clustering_then_the_earliest_trial():
    import types

    import optuna

    def trial(number, value, state="COMPLETE", **params):
        state = getattr(optuna.trial.TrialState, state)
        return types.SimpleNamespace(number=number, value=value, state=state, params=params)

    trials = [trial(0, 9.0, lc_weight=5.0), trial(1, 8.0, lc_weight=7.0),
              trial(2, 8.0, lc_weight=2.0), trial(3, 1.0, "FAIL", lc_weight=1.0),
              trial(4, 8.0, lc_weight=2.0)]  # fmt: skip
    assert tune.choose(trials).number == 2
    assert tune.choose([*trials, trial(5, 7.5, lc_weight=30.0)]).number == 5
    untied = [trial(0, 8.0, lc_start_epoch=40), trial(1, 8.0, lc_start_epoch=20)]
    assert tune.choose(untied).number == 0


def test_tune_refuses_the_test_set_and_seeds_it_was_chosen_on(tmp_path):
    with pytest.raises(UserInputError, match="never on the test set: hold one out"):
        plan(tmp_path, overrides=[])
    with pytest.raises(UserInputError, match="share \\[1\\]: the confirmation must use fresh"):
        plan(tmp_path, seeds=[1, 2])
    with pytest.raises(UserInputError, match="changes the epochs before the fork"):
        plan(tmp_path, space=tune.parse_space(["lr=float:0.01:0.1"]))
    with pytest.raises(UserInputError, match="give lc_start_epoch as choice"):
        plan(tmp_path, space=tune.parse_space(["lc_start_epoch=int:10:50"]))
    with pytest.raises(UserInputError, match="NAME=float:LOW:HIGH"):
        tune.parse_space(["lc_weight=uniform:1:2"])
    with pytest.raises(UserInputError, match="is not a training flag"):
        tune.parse_space(["lc_wieght=log:1:30"])


def test_a_trial_whose_run_did_not_finish_has_no_value():
    assert tune.objective([{"completed": True, "teacher_validation_error": 4.0}]) == 4.0
    assert tune.objective([{"completed": False, "teacher_validation_error": 4.0}]) is None
    assert tune.objective([None]) is None
    # A result that only has a test error cannot be judged: the test error is never read.
    with pytest.raises(KeyError):
        tune.objective([{"completed": True, "teacher_test_error": 1.0}])


@pytest.mark.slow
@pytest.mark.jax_only  # the command line and real runs, once
def test_experiment_tune_on_digits_searches_then_confirms(tmp_path):
    command = [
        sys.executable, os.path.join(ROOT, "scripts", "experiment.py"), "tune",
        "--setting=digits", f"--root={tmp_path}", "--fork", "--trials=2", "--tune_seeds=0",
        "--seeds=1-2", "--space=lc_weight=log:1:30", *VALIDATION, "--set=width=0.25",
        "--set=epochs=3", "--set=lc_start_epoch=2", "--set=lc_rampup_epochs=1",
        "--set=lr_decay_epochs=1", "--set=eval_every=1", "--parallel=2",
        "--set=" + NO_STARTUP_CHECK[2:],
    ]  # fmt: skip
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=900,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    summary = json.load(open(tmp_path / "digits" / "tune" / "tune.json"))
    assert [trial["state"] for trial in summary["trials"]] == ["COMPLETE", "COMPLETE"]
    assert summary["confirmation"]["seeds"] == [1, 2]
    assert summary["confirmation"]["paired"]["ci"][0] is not None
    for seed in (1, 2):
        results = json.load(
            open(
                tmp_path / "digits" / "tune" / "confirm" / "mtlc" / f"seed_{seed}" / "results.json"
            )
        )
        assert results["config"]["lc_weight"] == pytest.approx(
            summary["best"]["params"]["lc_weight"]
        )
        assert results["teacher_test_error"] is not None  # evaluated once, at the end
    assert "Chosen (trial" in completed.stdout
