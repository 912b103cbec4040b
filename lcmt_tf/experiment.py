"""Experiments over settings and seeds: the paper's Table I as ordinary runs.

A setting S is the pair of flag files `flags/S_mt.txt` (Mean Teacher, method "mt") and
`flags/S.txt` (MT+LC, method "mtlc"). Each run of a table is an ordinary run directory,
`ROOT/S/METHOD/seed_K` with `--seed=K --label_seed=K`, so every run resumes, and running
the same table again skips the finished runs and continues the others. With `fork`,
each MT+LC run starts from its seed's MT run at the LC start epoch (`--fork_from`), so
the pair shares those epochs exactly. The table holds final-epoch errors; the best
error over evaluations (test-set selection) only in its own labelled column.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

from lcmt_tf.checkpoint import atomic_write, atomic_write_json, saved_epoch
from lcmt_tf.config import TrainConfig
from lcmt_tf.errors import UserInputError
from lcmt_tf.statistics import mean_std, paired_difference
from lcmt_tf.train import STATE_FILE, build_model, configure_backend, load_training_data

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_SCRIPT = os.path.join(ROOT_DIR, "scripts", "train.py")
FLAGS_DIR = os.path.join(ROOT_DIR, "flags")
METHODS = ("mt", "mtlc")
METHOD_NAMES = {"mt": "Mean Teacher", "mtlc": "MT + LC"}
RESULTS_FILE = "results.json"


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of an experiment: scripts/train.py with `args`."""

    setting: str
    method: str
    seed: int
    model_dir: str
    args: tuple[str, ...]
    after: str | None = None  # model_dir of the run it forks from, which must finish first


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,2,5' and mixtures like '0-2,7' work too."""
    seeds: list[int] = []
    try:
        for part in filter(None, (part.strip() for part in text.split(","))):
            first, _, last = part.partition("-")
            seeds += range(int(first), int(last or first) + 1)
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UserInputError(f"--seeds={text!r}: give distinct seeds >= 0, like 0-4 or 0,1,2")
    return seeds


def flag_file(setting: str, method: str, flags_dir: str = FLAGS_DIR) -> str:
    name = f"{setting}_mt.txt" if method == "mt" else f"{setting}.txt"
    return os.path.join(flags_dir, name)


def override_args(overrides: Sequence[str]) -> list[str]:
    """--set KEY=VALUE entries as train.py flags."""
    args = []
    for override in overrides:
        key, equals, value = override.partition("=")
        if not equals or not key.strip():
            raise UserInputError(f"--set={override!r} must look like KEY=VALUE, e.g. epochs=12")
        args.append(f"--{key.strip()}={value}")
    return args


def resolve(args: Sequence[str]) -> dict:
    """The configuration scripts/train.py resolves from `args` (its --dry_run); its
    one-line error becomes a UserInputError."""
    completed = subprocess.run(
        [sys.executable, TRAIN_SCRIPT, *args, "--dry_run"],
        cwd=ROOT_DIR,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        lines = completed.stderr.strip().splitlines() or ["train.py failed"]
        raise UserInputError(lines[-1].removeprefix("train.py: error: "))
    return json.loads(completed.stdout)


def plan_table(
    settings: Sequence[str],
    seeds: Sequence[int],
    root: str,
    overrides: Sequence[str] = (),
    fork: bool = False,
    flags_dir: str = FLAGS_DIR,
) -> list[Run]:
    """The runs of a table, Mean Teacher runs first. Checks that every flag file pair
    exists and resolves (with the overrides) before anything runs."""
    extra = override_args(overrides)
    runs = []
    for setting in settings:
        files = {method: flag_file(setting, method, flags_dir) for method in METHODS}
        missing = [path for path in files.values() if not os.path.isfile(path)]
        if missing:
            raise UserInputError(
                f"setting {setting!r} needs the flag files {files['mt']} and {files['mtlc']}; "
                f"{missing[0]} does not exist"
            )
        lc_start = resolve([f"--flagfile={files['mtlc']}", *extra])["lc_start_epoch"]
        resolve([f"--flagfile={files['mt']}", *extra])
        for seed in seeds:
            directories = {m: os.path.join(root, setting, m, f"seed_{seed}") for m in METHODS}
            for method in METHODS:
                args = [
                    f"--flagfile={files[method]}",
                    *extra,
                    f"--seed={seed}",
                    f"--label_seed={seed}",
                    f"--model_dir={directories[method]}",
                    "--verbose=2",
                ]
                after = None
                if fork and method == "mt":
                    args.append(f"--keep_epochs={lc_start}")
                if fork and method == "mtlc":
                    args.append(f"--fork_from={directories['mt']}")
                    after = directories["mt"]
                runs.append(Run(setting, method, seed, directories[method], tuple(args), after))
    return sorted(runs, key=lambda run: METHODS.index(run.method))


def read_results(model_dir: str) -> dict | None:
    try:
        with open(os.path.join(model_dir, RESULTS_FILE)) as file:
            return json.load(file)
    except (OSError, ValueError):
        return None


def status(run: Run) -> str:
    """'finished' (completed), 'stopped' (a NaN loss or a collapse ended it: rerunning
    would stop again), 'unfinished' (started, not ended) or 'new'."""
    results = read_results(run.model_dir)
    if results is not None and results.get("completed"):
        return "finished"
    if results is not None and results.get("stop_reason"):
        return "stopped"
    return "unfinished" if os.path.isdir(run.model_dir) else "new"


def execute(
    runs: Sequence[Run], parallel: int = 1, report: Callable[[str], None] = print
) -> dict[str, int]:
    """Runs what is not finished, `parallel` at a time, each as a subprocess whose
    output goes to MODEL_DIR.log; a forked run waits for its source. Returns each
    run's exit status (0 for a run that was already finished)."""
    outcomes: dict[str, int] = {}
    done = {run.model_dir: threading.Event() for run in runs}
    lock = threading.Lock()

    def one(run: Run) -> None:
        code = 1
        try:
            code = attempt(run)
        finally:
            with lock:
                outcomes[run.model_dir] = code
            done[run.model_dir].set()

    def attempt(run: Run) -> int:
        if run.after in done:
            done[run.after].wait()
            with lock:
                failed = outcomes.get(run.after) != 0
            if failed:
                report(f"skip   {run.model_dir}: the run it forks from did not finish")
                return 1
        state = status(run)
        if state in ("finished", "stopped"):
            report(f"done   {run.model_dir} ({state} earlier)")
            return 0 if state == "finished" else 1
        os.makedirs(os.path.dirname(run.model_dir), exist_ok=True)
        report(f"{'resume' if state == 'unfinished' else 'start '} {run.model_dir}")
        with open(f"{run.model_dir}.log", "a") as log:
            code = subprocess.call(
                [sys.executable, TRAIN_SCRIPT, *run.args],
                cwd=ROOT_DIR,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        outcome = "end   " if code == 0 else "FAILED"
        report(f"{outcome} {run.model_dir} (exit {code}, log: {run.model_dir}.log)")
        return code

    # Mean Teacher runs are queued first, so a waiting fork never holds the worker its
    # source needs.
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for future in [pool.submit(one, run) for run in runs]:
            future.result()
    return outcomes


def summarize(runs: Sequence[Run]) -> dict:
    """Table I from the runs' results.json: per setting and method the final test
    errors over the finished seeds, and per setting the paired MT+LC − MT difference."""
    results = {run.model_dir: read_results(run.model_dir) for run in runs}
    finished = {
        key: value for key, value in results.items() if value is not None and value["completed"]
    }
    rows, paired, incomplete = [], [], []
    for run in runs:
        if run.model_dir not in finished:
            reason = (results[run.model_dir] or {}).get("stop_reason")
            incomplete.append({**_identity(run), "status": status(run), "stop_reason": reason})
    settings = list(dict.fromkeys(run.setting for run in runs))
    for setting in settings:
        by_method = {}
        for method in METHODS:
            values = {
                run.seed: finished[run.model_dir]
                for run in runs
                if (run.setting, run.method) == (setting, method) and run.model_dir in finished
            }
            by_method[method] = values
            rows.append(_row(setting, method, values))
        common = sorted(set(by_method["mt"]) & set(by_method["mtlc"]))
        entry = {"setting": setting, "seeds": common}
        for network in ("teacher", "student"):
            key = f"{network}_test_error"
            difference = paired_difference(
                [by_method["mtlc"][seed][key] for seed in common],
                [by_method["mt"][seed][key] for seed in common],
            )
            entry[f"{network}_differences"] = difference["differences"]
            entry[f"{network}_difference_mean"] = difference["mean"]
            entry[f"{network}_difference_ci95"] = difference["ci"]
        paired.append(entry)
    return _nan_to_none({"rows": rows, "paired": paired, "incomplete": incomplete})


def _nan_to_none(value):
    """JSON has no NaN: a statistic that needs more seeds than there are is null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _nan_to_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(item) for item in value]
    return value


def _identity(run: Run) -> dict:
    return {"setting": run.setting, "method": run.method, "seed": run.seed}


def _row(setting: str, method: str, values: dict[int, dict]) -> dict:
    seeds = sorted(values)
    row: dict = {"setting": setting, "method": method, "seeds": seeds}
    for key in ("teacher_test_error", "student_test_error", "teacher_best_test_error"):
        errors = [values[seed][key] for seed in seeds]
        row[f"{key}_mean"], row[f"{key}_std"] = mean_std(errors)
        row[f"{key}s"] = errors
    row["wall_time_s"] = [values[seed]["wall_time_s"] for seed in seeds]
    return row


def markdown(table: dict) -> str:
    """table.md: final errors (mean ± sample std over seeds), the paired differences,
    and the best-over-evaluations errors in their own, labelled column."""

    def cell(row, key):
        mean, std = row[f"{key}_mean"], row[f"{key}_std"]
        if mean is None:
            return "—"
        return f"{mean:.2f}" + ("" if std is None else f" ± {std:.2f}")  # one seed: no std

    lines = [
        "| setting | method | seeds | teacher test error (%), final | student test error (%), "
        "final | best teacher error over evaluations (%, test-set selection) |",
        "|---|---|---|---|---|---|",
    ]
    for row in table["rows"]:
        seeds = ",".join(map(str, row["seeds"])) or "none finished"
        lines.append(
            f"| {row['setting']} | {METHOD_NAMES[row['method']]} | {seeds} "
            f"| {cell(row, 'teacher_test_error')} | {cell(row, 'student_test_error')} "
            f"| {cell(row, 'teacher_best_test_error')} |"
        )
    lines += [
        "",
        "Paired difference MT+LC − MT, final teacher test error (percentage points; "
        "negative: LC helps), per seed, mean and 95 % t-interval:",
        "",
    ]
    for entry in table["paired"]:
        low, high = entry["teacher_difference_ci95"]
        mean = entry["teacher_difference_mean"]
        differences = ", ".join(f"{value:+.2f}" for value in entry["teacher_differences"])
        summary = "no pair finished" if mean is None else f"mean {mean:+.2f}"
        if low is not None:
            summary += f", 95 % CI [{low:+.2f}, {high:+.2f}]"
        lines.append(
            f"- {entry['setting']} (seeds {','.join(map(str, entry['seeds'])) or 'none'}): "
            f"{differences or '—'}; {summary}"
        )
    if table["incomplete"]:
        lines += ["", "Not in the table (not finished):", ""]
        for item in table["incomplete"]:
            reason = f": {item['stop_reason']}" if item["stop_reason"] else ""
            run = f"{item['setting']} {item['method']} seed {item['seed']}"
            lines.append(f"- {run}: {item['status']}{reason}")
    return "\n".join(lines) + "\n"


CSV_COLUMNS = (
    "setting",
    "method",
    "seeds",
    "teacher_test_error_mean",
    "teacher_test_error_std",
    "student_test_error_mean",
    "student_test_error_std",
    "teacher_test_errors",
    "student_test_errors",
    "teacher_best_test_error_mean",
    "teacher_best_test_error_std",
)


def write_table(root: str, table: dict) -> None:
    """ROOT/table.json, table.csv and table.md, each written atomically."""
    os.makedirs(root, exist_ok=True)
    atomic_write_json(os.path.join(root, "table.json"), table)

    def write_csv(temporary):
        with open(temporary, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(CSV_COLUMNS)
            for row in table["rows"]:
                writer.writerow(
                    [
                        " ".join(map(str, value)) if isinstance(value, list) else value
                        for value in (row[column] for column in CSV_COLUMNS)
                    ]
                )

    def write_markdown(temporary):
        with open(temporary, "w") as file:
            file.write(markdown(table))

    atomic_write(os.path.join(root, "table.csv"), write_csv)
    atomic_write(os.path.join(root, "table.md"), write_markdown)


def plan(runs: Sequence[Run], measure: Callable[[dict], float] | None = None) -> list[dict]:
    """Per run: its status, the epochs it has left, and its projected wall time, from
    the finished runs of the same setting and method (seconds per epoch they measured)
    or else from `measure(config)` (seconds per epoch; `measure_epoch_seconds`)."""
    # One resolution per setting and method: its seeds differ only in seed and model_dir.
    configs: dict[tuple[str, str], dict] = {}
    for run in runs:
        if (run.setting, run.method) not in configs:
            configs[run.setting, run.method] = resolve(run.args)
    measured: dict[tuple[str, str], float] = {}
    for run in runs:
        results = read_results(run.model_dir)
        trained = results and results["epochs_run"] - results["resumed_from_epoch"]
        if results and results.get("completed") and trained:
            measured.setdefault((run.setting, run.method), results["wall_time_s"] / trained)
    entries = []
    for run in runs:
        key = (run.setting, run.method)
        config, state = configs[key], status(run)
        start = config["lc_start_epoch"] if run.after else 0
        left = 0 if state in ("finished", "stopped") else config["epochs"] - start
        trained = saved_epoch(os.path.join(run.model_dir, STATE_FILE)) or 0
        left -= min(left, max(0, trained - start))
        if key not in measured and measure is not None and left:
            measured[key] = measure(config)
        seconds = measured.get(key)
        entries.append(
            {
                **_identity(run),
                "status": state,
                "epochs_left": left,
                "projected_s": None if seconds is None else left * seconds,
                "seconds_per_epoch": seconds,
            }
        )
    return entries


def measure_epoch_seconds(config: dict, steps: int = 3) -> float:
    """Seconds an epoch of this configuration takes here: the mean time of `steps`
    training steps after one warm-up step (compilation), times the steps of an epoch.
    Loads the data and builds the model as the run will."""
    settings = TrainConfig.from_dict({k: v for k, v in config.items() if k != "dry_run"})
    dataset, _, _, batches = load_training_data(settings)
    configure_backend(settings)
    model = build_model(settings, dataset, batches[0]["labeled_images"])
    model.consistency_weight.assign(settings.consistency_weight)
    model.lc_weight.assign(settings.lc_weight)
    model.fit(batches, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
    start = time.perf_counter()
    model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    return (time.perf_counter() - start) / steps * len(batches)
