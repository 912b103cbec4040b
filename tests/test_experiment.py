"""scripts/experiment.py: statistics against scipy; the table's, the sweep's and the
curves' numbers against the runs' own results.json and history.csv (recomputed with
NumPy); skip/resume on a rerun; t-SNE outputs; and the commands' errors.

The command-line tests share one forked digits table (2 seeds, 4 epochs), trained once.
"""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from lcmt_tf.errors import UserInputError
from lcmt_tf.experiments.runner import parse_seeds
from lcmt_tf.experiments.statistics import mean_std, paired_difference

from conftest import NO_STARTUP_CHECK, ROOT, error_lines

SCRIPT = os.path.join(ROOT, "scripts", "experiment.py")
# Digits MT and MT+LC, 4 epochs, LC from epoch 2 (the fork point), decay in the last.
SHORT = [
    "--set=epochs=4",
    "--set=lc_start_epoch=2",
    "--set=lc_rampup_epochs=1",
    "--set=lr_decay_epochs=1",
    "--set=width=0.5",
    "--set=eval_every=2",
    "--set=" + NO_STARTUP_CHECK[2:],
]


def experiment(*args):
    return subprocess.run(
        [sys.executable, SCRIPT, *args],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_mean_and_sample_std_match_numpy():
    values = [12.5, 11.0, 13.25, 12.0]
    assert mean_std(values) == pytest.approx((np.mean(values), np.std(values, ddof=1)))
    mean, std = mean_std([3.0])
    assert mean == 3.0 and math.isnan(std)


def test_paired_difference_and_its_t_interval_match_scipy():
    treated = np.array([11.2, 12.9, 10.4, 12.2, 11.7])
    control = np.array([12.0, 13.1, 11.9, 12.5, 12.8])
    result = paired_difference(treated, control)
    reference = stats.ttest_rel(treated, control).confidence_interval(0.95)
    assert result["mean"] == pytest.approx(np.mean(treated - control))
    assert result["ci"] == pytest.approx([reference.low, reference.high])
    assert result["differences"] == pytest.approx(list(treated - control))
    single = paired_difference([1.0], [2.0])
    assert single["mean"] == -1.0 and all(math.isnan(bound) for bound in single["ci"])


@pytest.mark.parametrize(
    "text, seeds", [("0-4", [0, 1, 2, 3, 4]), ("3", [3]), ("0,2-3,9", [0, 2, 3, 9])]
)
def test_seed_ranges(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "4-2", "1,1", "-1"])
def test_bad_seed_ranges_are_refused(text):
    with pytest.raises(UserInputError, match="--seeds"):
        parse_seeds(text)


@pytest.mark.parametrize(
    "args, message",
    [
        (["table", "--settings=nope"], "setting 'nope' needs the flag files"),
        (["table", "--settings=digits", "--set=no_such_flag=1"], "no_such_flag"),
        (["table", "--settings=digits", "--set=epochs"], "--set='epochs' must look like KEY=VALUE"),
        (["table", "--settings=digits", "--seeds=x"], "--seeds='x'"),
        (["table"], "--settings is empty"),
        (["plot", "--settings=digits"], "(table, sweep, tune, budget, curves, bias, tsne)"),
        (["table", "--settings=digits", "--methods=mt"], "give mt and mtlc"),
        (["sweep", "--setting=digits", "--values=1"], "--param is required"),
        (["sweep", "--setting=digits", "--param=lc_epsilon"], "--values is required"),
        (["sweep", "--setting=digits", "--param=model", "--values=1"], "not a numeric"),
        (["sweep", "--setting=digits", "--param=lc_weight", "--values=1,1"], "distinct"),
        (
            ["sweep", "--setting=digits", "--param=lr", "--values=0.1", "--fork"],
            "--fork: --param=lr",
        ),
        (["sweep", "--setting=nope", "--param=lc_weight", "--values=1"], "setting 'nope' needs"),
        (["curves", "--setting=digits"], "no runs with a history.csv"),
        (["tsne", "--setting=digits"], "does not exist"),
    ],
)
@pytest.mark.tensorflow_only  # the command line's checks do not depend on the backend
def test_mistakes_end_with_one_line_and_exit_2(args, message, tmp_path):
    completed = experiment(*args, f"--root={tmp_path / 'root'}")
    assert completed.returncode == 2, completed.stderr
    lines = error_lines(completed.stderr)
    assert len(lines) == 1 and lines[0].startswith("experiment.py: error: "), lines
    assert message in lines[0]
    assert not (tmp_path / "root").exists()


@pytest.mark.tensorflow_only
@pytest.mark.slow
def test_plan_lists_the_runs_with_measured_projections_and_runs_nothing(tmp_path):
    root = tmp_path / "table"
    completed = experiment("table", "--settings=digits", "--seeds=3", f"--root={root}", "--fork",
                           "--plan", *SHORT)  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("projected: ")
    # MT trains 4 epochs; the fork trains the 2 after the fork point.
    assert "mt seed 3" in lines[0] and "4 epochs left" in lines[0] and "unknown" not in lines[0]
    assert "mtlc seed 3" in lines[1] and "2 epochs left" in lines[1]
    assert not root.exists()


def results(path):
    with open(path / "results.json") as file:
        return json.load(file)


SEEDS = (0, 1)


@pytest.fixture(scope="module")
def table_root(tmp_path_factory):
    """A forked digits table, seeds 0-1, trained once for the tests below."""
    root = tmp_path_factory.mktemp("experiment") / "table"
    completed = experiment("table", "--settings=digits", "--seeds=0-1", f"--root={root}",
                           "--fork", "--parallel=2", *SHORT)  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return root


def run_dirs(root):
    return {(m, s): root / "digits" / m / f"seed_{s}" for m in ("mt", "mtlc") for s in SEEDS}


@pytest.mark.tensorflow_only
def test_forked_table_matches_its_runs(table_root):
    runs = run_dirs(table_root)
    for (method, seed), directory in runs.items():
        config = json.load(open(directory / "config.json"))
        assert (config["seed"], config["label_seed"], config["epochs"]) == (seed, seed, 4)
        assert config["lc_weight"] == (0.0 if method == "mt" else 10.0)
    # The Mean Teacher runs keep the fork point; the MT+LC runs start from it.
    assert all((runs["mt", s] / "training_state_epoch2.npz").exists() for s in SEEDS)
    assert json.load(open(runs["mtlc", 0] / "config.json"))["fork_from"] == str(runs["mt", 0])

    table = json.load(open(table_root / "table.json"))
    for row in table["rows"]:
        errors = [results(runs[row["method"], s])["teacher_test_error"] for s in SEEDS]
        students = [results(runs[row["method"], s])["student_test_error"] for s in SEEDS]
        assert row["seeds"] == list(SEEDS) and row["teacher_test_errors"] == errors
        assert row["teacher_test_error_mean"] == pytest.approx(np.mean(errors))
        assert row["teacher_test_error_std"] == pytest.approx(np.std(errors, ddof=1))
        assert row["student_test_error_std"] == pytest.approx(np.std(students, ddof=1))
    (paired,) = table["paired"]
    differences = [
        results(runs["mtlc", s])["teacher_test_error"]
        - results(runs["mt", s])["teacher_test_error"]
        for s in SEEDS
    ]
    assert paired["teacher_differences"] == pytest.approx(differences)
    assert paired["teacher_difference_mean"] == pytest.approx(np.mean(differences))
    with open(table_root / "table.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(r["method"], float(r["teacher_test_error_mean"])) for r in rows] == [
        (r["method"], pytest.approx(r["teacher_test_error_mean"])) for r in table["rows"]
    ]
    assert "test-set selection" in (table_root / "table.md").read_text()


@pytest.mark.slow
@pytest.mark.tensorflow_only
def test_a_table_rerun_only_finishes_what_is_left(table_root):
    runs = run_dirs(table_root)
    before = json.load(open(table_root / "table.json"))
    # A run killed before it ended has no results.json: only it runs again.
    os.remove(runs["mtlc", 1] / "results.json")
    finished = {
        key: os.path.getmtime(path / "results.json")
        for key, path in runs.items()
        if key != ("mtlc", 1)
    }
    completed = experiment("table", "--settings=digits", "--seeds=0-1", f"--root={table_root}",
                           "--fork", *SHORT)  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.count("(finished earlier)") == 3
    assert f"resume {runs['mtlc', 1]}" in completed.stdout
    assert {key: os.path.getmtime(runs[key] / "results.json") for key in finished} == finished
    rerun = json.load(open(table_root / "table.json"))["rows"]
    assert [row["teacher_test_errors"] for row in rerun] == [
        row["teacher_test_errors"] for row in before["rows"]
    ]


@pytest.mark.slow
@pytest.mark.tensorflow_only
def test_sweep_shares_the_table_runs_and_summarizes_each_value(table_root):
    # 0: Mean Teacher (the table's run); 0.1: the flag file's epsilon (the table's MT+LC
    # run); 0.5: new forked runs.
    completed = experiment("sweep", "--setting=digits", "--param=lc_epsilon",
                           "--values=0,0.1,0.5", "--seeds=0-1", f"--root={table_root}",
                           "--fork", *SHORT)  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.count("(finished earlier)") == 4
    new = {s: table_root / "digits" / "lc_epsilon_0.5" / f"seed_{s}" for s in SEEDS}
    for seed, directory in new.items():
        config = json.load(open(directory / "config.json"))
        assert config["lc_epsilon"] == 0.5 and config["fork_from"] == str(
            run_dirs(table_root)["mt", seed]
        )
    sweep = json.load(open(table_root / "sweep.json"))
    assert sweep["param"] == "lc_epsilon"
    by_value = {row["lc_epsilon"]: row for row in sweep["rows"]}
    assert set(by_value) == {0.0, 0.1, 0.5} and by_value[0.0]["method"] == "mt"
    sources = {0.0: [run_dirs(table_root)["mt", s] for s in SEEDS],
               0.1: [run_dirs(table_root)["mtlc", s] for s in SEEDS],
               0.5: [new[s] for s in SEEDS]}  # fmt: skip
    for value, directories in sources.items():
        errors = [results(directory)["teacher_test_error"] for directory in directories]
        assert by_value[value]["teacher_test_errors"] == errors
        assert by_value[value]["teacher_test_error_std"] == pytest.approx(np.std(errors, ddof=1))
    with open(table_root / "sweep.csv", newline="") as file:
        assert [float(row["lc_epsilon"]) for row in csv.DictReader(file)] == [0.0, 0.1, 0.5]
    assert (table_root / "sweep.png").stat().st_size > 10_000


@pytest.mark.tensorflow_only
def test_curves_average_the_runs_histories(table_root):
    completed = experiment("curves", "--setting=digits", f"--root={table_root}")
    assert completed.returncode == 0, completed.stderr
    curves = json.load(open(table_root / "digits" / "curves.json"))
    assert curves["lc_start_epoch"] == 2
    for method in ("mt", "mtlc"):
        entry = curves["methods"][method]
        assert entry["seeds"] == list(SEEDS) and entry["epochs"] == [2, 4]  # --eval_every=2
        for network in ("student", "teacher"):
            values = []
            for seed in SEEDS:
                with open(run_dirs(table_root)[method, seed] / "history.csv", newline="") as f:
                    rows = {int(r["epoch"]): r for r in csv.DictReader(f)}
                values.append([float(rows[e][f"{network}_test_error"]) for e in (2, 4)])
            assert entry[f"{network}_test_error_mean"] == pytest.approx(np.mean(values, axis=0))
            assert entry[f"{network}_test_error_std"] == pytest.approx(
                np.std(values, axis=0, ddof=1)
            )
    # Forked: both methods share epoch 2 exactly.
    assert curves["methods"]["mt"]["teacher_test_error_mean"][0] == pytest.approx(
        curves["methods"]["mtlc"]["teacher_test_error_mean"][0]
    )
    assert (table_root / "digits" / "curves.png").stat().st_size > 10_000


@pytest.mark.tensorflow_only
def test_bias_draws_the_diagnostics_of_both_methods(table_root):
    completed = experiment("bias", "--setting=digits", f"--root={table_root}")
    assert completed.returncode == 0, completed.stderr
    bias = json.load(open(table_root / "digits" / "bias.json"))
    for method in ("mt", "mtlc"):
        entry = bias["methods"][method]
        assert entry["epochs"] == [2, 4]  # every evaluation (--eval_every=2)
        values = []
        for seed in SEEDS:
            with open(run_dirs(table_root)[method, seed] / "history.csv", newline="") as f:
                rows = {int(r["epoch"]): r for r in csv.DictReader(f)}
            values.append([float(rows[e]["unlabeled_teacher_error"]) for e in (2, 4)])
        assert entry["unlabeled_teacher_error_mean"] == pytest.approx(np.mean(values, axis=0))
    # Forked: the pair shares its first evaluation exactly.
    assert bias["methods"]["mt"]["misclassified_neighbors_same_wrong_mean"][0] == pytest.approx(
        bias["methods"]["mtlc"]["misclassified_neighbors_same_wrong_mean"][0]
    )
    assert (table_root / "digits" / "bias.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.tensorflow_only
def test_tsne_maps_both_runs_and_writes_projector_files(table_root):
    completed = experiment("tsne", "--setting=digits", f"--root={table_root}", "--max_points=60")
    assert completed.returncode == 0, completed.stderr
    output = table_root / "digits"
    summary = json.load(open(output / "tsne.json"))
    from lcmt_tf.data import load_dataset

    data = load_dataset("digits")
    labeled = json.load(open(run_dirs(table_root)["mt", 0] / "labeled_indices.json"))
    for split, labels in (("train", data.y_train), ("test", data.y_test)):
        assert (output / f"tsne_{split}.png").stat().st_size > 10_000
        mt_panel, mtlc_panel = summary["panels"][split]
        assert mt_panel["indices"] == mtlc_panel["indices"]  # the same images in both maps
        indices = mt_panel["indices"]
        assert len(indices) == 60 == len(set(indices)) and np.shape(mt_panel["points"]) == (60, 2)
        assert mt_panel["labels"] == labels[indices].tolist()
        if split == "train":
            assert mt_panel["labeled"] == [i in labeled["labeled_indices"] for i in indices]
        projector = run_dirs(table_root)["mtlc", 0] / "tensorboard" / "projector"
        vectors = np.loadtxt(projector / f"{split}_features.tsv", delimiter="\t")
        metadata = np.loadtxt(projector / f"{split}_metadata.tsv", delimiter="\t", skiprows=1)
        assert vectors.shape[0] == 60 and metadata[:, 0].tolist() == labels[indices].tolist()
    assert "train_features.tsv" in (projector / "projector_config.pbtxt").read_text()
    assert list(projector.glob("events.out.tfevents.*"))  # TensorBoard lists it as a run


def fake_run(directory, teacher, student, collapsed_at_end):
    """A finished run directory: results.json and a two-epoch history.csv."""
    os.makedirs(directory)
    with open(directory / "results.json", "w") as file:
        json.dump({"completed": True, "teacher_test_error": teacher,
                   "student_test_error": student, "teacher_best_test_error": teacher - 1,
                   "wall_time_s": 1.0}, file)  # fmt: skip
    with open(directory / "history.csv", "w") as file:
        ratio = 0.04 if collapsed_at_end else 0.9
        file.write(
            f"epoch,collapsed,feature_spread_ratio\n1,0.0,1.0\n2,{float(collapsed_at_end)},{ratio}\n"
        )


def test_sweep_summary_marks_collapsed_seeds_and_leaves_out_unfinished_runs(tmp_path):
    from lcmt_tf.experiments.runner import Run
    from lcmt_tf.experiments.sweep import markdown, summarize_sweep

    runs = []
    errors = {(0.0, 0): 9.0, (0.0, 1): 7.0, (5.0, 0): 40.0, (5.0, 1): 8.0}
    for (value, seed), error in errors.items():
        directory = tmp_path / f"v{value}" / f"seed_{seed}"
        fake_run(directory, error, error + 0.5, collapsed_at_end=error > 30)
        method = "mt" if value == 0 else "mtlc"
        runs.append(Run("s", method, seed, str(directory), (), value=value))
    runs.append(Run("s", "mtlc", 2, str(tmp_path / "v5.0" / "seed_2"), (), value=5.0))
    sweep = summarize_sweep(runs, "lc_weight")
    mt, lc = sweep["rows"]
    assert (mt["lc_weight"], mt["seeds"], mt["collapsed_seeds"]) == (0.0, [0, 1], [])
    assert (lc["lc_weight"], lc["seeds"], lc["collapsed_seeds"]) == (5.0, [0, 1], [0])
    assert lc["final_feature_spread_ratios"] == [0.04, 0.9]
    assert lc["teacher_test_error_mean"] == pytest.approx(24.0)
    assert lc["student_test_error_std"] == pytest.approx(np.std([40.5, 8.5], ddof=1))
    assert sweep["incomplete"] == [
        {
            "setting": "s",
            "method": "mtlc",
            "seed": 2,
            "value": 5.0,
            "status": "new",
            "stop_reason": None,
        }  # fmt: skip
    ]
    assert "| 5 | MT + LC | 0,1 | 24.00 ± 22.63 | 24.50 ± 22.63 | 0.04-0.90 | 0 |" in markdown(
        sweep
    )
    # A sweep of FixMatch runs names its rows FixMatch and FixMatch + LC.
    for run in runs[:4]:
        path = os.path.join(run.model_dir, "results.json")
        with open(path) as file:
            results = json.load(file)
        with open(path, "w") as file:
            json.dump({**results, "config": {"method": "fixmatch"}}, file)
    table = markdown(summarize_sweep(runs, "lc_weight"))
    assert "| 0 | FixMatch | 0,1 |" in table and "| 5 | FixMatch + LC | 0,1 |" in table


@pytest.mark.parametrize("count, limit", [(10, 20), (1000, 50)])
def test_tsne_subsample_is_seeded_and_without_replacement(count, limit):
    from lcmt_tf.experiments.tsne import subsample

    chosen = subsample(count, limit, seed=3)
    assert len(chosen) == min(count, limit) == len(set(chosen.tolist()))
    assert chosen.tolist() == sorted(chosen.tolist()) and chosen.max() < count
    assert subsample(count, limit, seed=3).tolist() == chosen.tolist()


def test_budget_writes_a_table_per_label_count_from_its_runs(tmp_path):
    """The budget's plan, summary and files, on stand-in runs that write results.json
    (its runs are a table's runs, trained by the table tests above)."""
    from lcmt_tf.experiments import budget

    runs = budget.plan_budget(
        "digits", [50, 20], [0, 1], str(tmp_path), [s[6:] for s in SHORT], True
    )
    assert sorted(runs) == [20, 50]
    offset = {"supervised": 20.0, "mt": 10.0, "mtlc": 9.0}
    for count, budget_runs in runs.items():
        assert sorted((run.method, run.seed) for run in budget_runs) == [
            (method, seed) for method in ("mt", "mtlc", "supervised") for seed in (0, 1)
        ]
        for run in budget_runs:
            assert f"--num_labels={count}" in run.args and "--epochs=4" in run.args
            assert run.model_dir.startswith(str(tmp_path / f"labels_{count}" / "digits"))
            error = offset[run.method] + 100 / count + (run.seed if run.method == "mtlc" else 0)
            fake_run(Path(run.model_dir), error, error + 1.0, collapsed_at_end=False)
    summary = budget.summarize_budget(runs)
    assert [entry["num_labels"] for entry in summary["budgets"]] == [20, 50]
    for entry in summary["budgets"]:
        rows = {row["method"]: row for row in entry["rows"]}
        assert list(rows) == ["supervised", "mt", "mtlc"]
        mtlc = [9.0 + 100 / entry["num_labels"] + seed for seed in (0, 1)]
        assert rows["mtlc"]["teacher_test_error_mean"] == pytest.approx(np.mean(mtlc))
        assert rows["mtlc"]["teacher_test_error_std"] == pytest.approx(np.std(mtlc, ddof=1))
        # MT+LC - MT, seed by seed: -1 and 0.
        assert entry["paired"]["teacher_difference_mean"] == pytest.approx(-0.5)
    paths = budget.write_budget(str(tmp_path), summary)
    assert json.load(open(paths[0]))["budgets"][1]["num_labels"] == 50
    assert "| 50 | MT + LC | 2 |" in open(paths[1]).read()
    assert os.path.getsize(paths[2]) > 10_000


@pytest.mark.slow
@pytest.mark.tensorflow_only  # the command line's checks do not depend on the backend
def test_budget_plan_lists_a_table_per_label_count_and_runs_nothing(tmp_path):
    root = tmp_path / "budget"
    completed = experiment("budget", "--setting=digits", "--num_labels=20,50", "--seeds=0",
                           f"--root={root}", "--fork", "--plan", *SHORT)  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 7 and lines[-1].startswith("projected: ")  # 2 budgets x 3 methods
    for method in ("supervised", "mt", "mtlc"):
        assert sum(f" {method} seed 0 " in line for line in lines) == 2, lines
    assert not root.exists()


def test_a_setting_with_an_lc_twin_pairs_its_file_with_the_twin_and_names_its_method(tmp_path):
    from lcmt_tf.experiments.runner import flag_files, method_name

    files = flag_files("digits_fixmatch", ("mt", "mtlc"))
    assert {role: os.path.basename(path) for role, path in files.items()} == {
        "mt": "digits_fixmatch.txt",
        "mtlc": "digits_fixmatch_lc.txt",
    }
    files = flag_files("digits", ("mt", "mtlc"))
    assert [os.path.basename(files[role]) for role in ("mt", "mtlc")] == [
        "digits_mt.txt",
        "digits.txt",
    ]
    # A user's twin in --flags_dir wins like any of their files.
    (tmp_path / "mine.txt").write_text("--flagfile=digits_fixmatch.txt\n")
    (tmp_path / "mine_lc.txt").write_text("--flagfile=digits_fixmatch_lc.txt\n")
    assert flag_files("mine", ("mt", "mtlc"), [str(tmp_path)])["mtlc"] == str(
        tmp_path / "mine_lc.txt"
    )
    fixmatch = [{"config": {"method": "fixmatch"}}]
    assert [method_name(role, fixmatch) for role in ("mt", "mtlc")] == ["FixMatch", "FixMatch + LC"]
    assert [method_name(role) for role in ("mt", "mtlc")] == ["Mean Teacher", "MT + LC"]


def test_a_table_of_runs_that_evaluated_a_validation_split_shows_no_best_test_error(tmp_path):
    """Such runs select their best error on the validation split: results.json has no
    teacher_best_test_error. The table still summarizes them (it stopped with a
    KeyError at the end of a 10-seed study) and says why that column is empty."""
    from lcmt_tf.experiments.runner import Run
    from lcmt_tf.experiments.table import markdown, summarize

    runs = []
    for method, errors in (("mt", (6.0, 4.0)), ("mtlc", (5.0, 4.5))):
        for seed, error in enumerate(errors):
            directory = tmp_path / method / f"seed_{seed}"
            fake_run(directory, error, error + 1, collapsed_at_end=False)
            path = directory / "results.json"
            results = json.loads(path.read_text())
            del results["teacher_best_test_error"]
            path.write_text(json.dumps({**results, "teacher_best_validation_error": 3.0}))
            runs.append(Run("s", method, seed, str(directory), ()))
    table = summarize(runs)
    mt, lc = table["rows"]
    assert mt["teacher_test_error_mean"] == pytest.approx(5.0)
    assert mt["teacher_best_test_error_mean"] is None
    assert table["paired"][0]["teacher_differences"] == pytest.approx([-1.0, 0.5])
    text = markdown(table)
    assert "| s | Mean Teacher | 0,1 | 5.00 ± 1.41 | 6.00 ± 1.41 | — |" in text
    assert "evaluated a validation split" in text


def test_parallel_runs_report_whole_lines_one_at_a_time(tmp_path):
    """The worker threads' lines reach `report` one at a time (print from two threads
    at once ran two lines together)."""
    import threading
    import time

    from lcmt_tf.experiments.runner import Run, execute

    runs = []
    for seed in range(4):
        directory = tmp_path / f"seed_{seed}"
        fake_run(directory, 5.0, 5.0, collapsed_at_end=False)
        runs.append(Run("s", "mt", seed, str(directory), ()))
    inside, overlapped, lines = threading.Event(), [], []

    def report(line):
        if inside.is_set():
            overlapped.append(line)
        inside.set()
        time.sleep(0.05)
        lines.append(line)
        inside.clear()

    assert execute(runs, parallel=4, report=report) == {run.model_dir: 0 for run in runs}
    assert not overlapped
    assert sorted(lines) == sorted(f"done   {run.model_dir} (finished earlier)" for run in runs)
