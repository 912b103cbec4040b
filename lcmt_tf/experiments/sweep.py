"""One setting, one parameter, several values: the paper's Figures 4 (epsilon) and 5
(lambda2).

Every value V of parameter P is an MT+LC run per seed, `flags/S.txt --P=V` in
`ROOT/S/P_V/seed_K`; the value the flag file already has is the table's run,
`ROOT/S/mtlc/seed_K`, so a sweep and a table in one ROOT share their runs. Mean
Teacher (`flags/S_mt.txt`, `ROOT/S/mt/seed_K`) is always trained, as the reference
line, and value 0 of `lc_epsilon` or `lc_weight` means it, as in the paper. With
`fork`, every MT+LC run starts from its seed's MT run at its LC start epoch.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

from lcmt_tf.config import TrainConfig
from lcmt_tf.errors import UserInputError
from lcmt_tf.experiments.runner import (
    Run,
    finished_results,
    flag_files,
    method_name,
    nan_to_none,
    override_args,
    read_history,
    resolve,
    run_args,
    unfinished,
)
from lcmt_tf.experiments.table import (
    BEST_KEY,
    ERROR_COLUMNS,
    error_cell,
    error_row,
    incomplete_lines,
    no_best_test_error_lines,
    run_directory,
)
from lcmt_tf.files import atomic_write_csv, atomic_write_json, atomic_write_text
from lcmt_tf.provenance import made_by_markdown
from lcmt_tf.run_dir.fork import MAY_DIFFER_AFTER_FORK

# Parameters whose value 0 switches Local Clustering off: plain Mean Teacher.
ZERO_MEANS_MEAN_TEACHER = ("lc_epsilon", "lc_weight")
NUMERIC_FIELDS = {
    field.name for field in dataclasses.fields(TrainConfig) if field.type in ("int", "float")
}


def parse_values(text: str, param: str) -> list[float]:
    """'0,10,50' -> [0.0, 10.0, 50.0]: distinct numbers, in the order given."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or len(set(values)) != len(values):
        raise UserInputError(f"--values={text!r}: give distinct numbers for --param={param}")
    return values


def value_directory(root: str, setting: str, param: str, value: float) -> str:
    return os.path.join(root, setting, f"{param}_{value:g}")


def plan_sweep(
    setting: str,
    param: str,
    values: Sequence[float],
    seeds: Sequence[int],
    root: str,
    overrides: Sequence[str] = (),
    fork: bool = False,
    flags_dirs: Sequence[str] = (),
) -> list[Run]:
    """The runs of a sweep: the Mean Teacher runs first, then one MT+LC run per value
    and seed. Checks the parameter, the flag files and every value's configuration
    before anything runs."""
    if param not in NUMERIC_FIELDS:
        raise UserInputError(
            f"--param={param!r} is not a numeric training setting; sweep one of "
            f"{', '.join(sorted(NUMERIC_FIELDS))}"
        )
    if fork and param not in MAY_DIFFER_AFTER_FORK:
        raise UserInputError(
            f"--fork: --param={param} shapes the epochs before the fork point; sweep it "
            f"without --fork, or sweep an LC setting (lc_weight, lc_epsilon, ...)"
        )
    extra = override_args(overrides)
    files = flag_files(setting, ("mt", "mtlc"), flags_dirs)
    resolve([f"--flagfile={files['mt']}", *extra])
    default = resolve([f"--flagfile={files['mtlc']}", *extra])
    lc_values = [v for v in values if not (v == 0 and param in ZERO_MEANS_MEAN_TEACHER)]
    lc_starts = {}
    for value in lc_values:
        lc_starts[value] = resolve([f"--flagfile={files['mtlc']}", *extra, f"--{param}={value:g}"])[
            "lc_start_epoch"
        ]
    mt_value = 0.0 if param in ZERO_MEANS_MEAN_TEACHER else None
    runs = []
    for seed in seeds:
        mt_dir = run_directory(root, setting, "mt", seed)
        args = run_args(files["mt"], extra, seed, mt_dir)
        if fork and lc_starts:
            args.append(f"--keep_epochs={','.join(map(str, sorted(set(lc_starts.values()))))}")
        runs.append(Run(setting, "mt", seed, mt_dir, tuple(args), value=mt_value))
    for value in lc_values:
        for seed in seeds:
            if math.isclose(value, float(default[param])):
                model_dir = run_directory(root, setting, "mtlc", seed)
            else:
                model_dir = os.path.join(
                    value_directory(root, setting, param, value), f"seed_{seed}"
                )
            args = [*run_args(files["mtlc"], extra, seed, model_dir), f"--{param}={value:g}"]
            after = None
            if fork:
                after = run_directory(root, setting, "mt", seed)
                args.append(f"--fork_from={after}")
            runs.append(Run(setting, "mtlc", seed, model_dir, tuple(args), after, value))
    return runs


def final_epoch(model_dir: str) -> dict[str, float]:
    """The last row of a run's history.csv ({} without one)."""
    history = read_history(model_dir)
    return history[-1] if history else {}


def summarize_sweep(runs: Sequence[Run], param: str) -> dict:
    """sweep.json: per value (and for Mean Teacher) the final errors over the finished
    seeds, which seeds ended collapsed, their final feature spread (share of its peak)
    and LC neighbor fraction, and the best errors over evaluations apart."""
    finished = finished_results(runs)
    rows = []
    for method, value in dict.fromkeys((run.method, run.value) for run in runs):
        group = [run for run in runs if (run.method, run.value) == (method, value)]
        values = {run.seed: finished[run.model_dir] for run in group if run.model_dir in finished}
        # Named by the method the finished runs trained (FixMatch or Mean Teacher).
        name = method_name(method, list(finished.values()))
        row = error_row({"method": method, "method_name": name, param: value}, values)
        last = {run.seed: final_epoch(run.model_dir) for run in group if run.model_dir in finished}
        # The collapse monitor's flag: feature spread below 5 % of its peak at the end.
        row["collapsed_seeds"] = [seed for seed in row["seeds"] if last[seed].get("collapsed") == 1]
        for key in ("feature_spread_ratio", "lc_neighbor_fraction"):
            row[f"final_{key}s"] = [last[seed].get(key, math.nan) for seed in row["seeds"]]
        rows.append(row)
    setting = runs[0].setting if runs else None
    return nan_to_none(
        {
            "setting": setting,
            "param": param,
            "rows": rows,
            "incomplete": unfinished(runs, finished),
        }
    )


def markdown(sweep: dict) -> str:
    param = sweep["param"]
    lines = [
        f"| {param} | method | seeds | teacher test error (%), final | student test error (%), "
        "final | feature spread at the end (share of its peak) | collapsed seeds "
        "| best teacher error over evaluations (%, test-set selection) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in sweep["rows"]:
        value = "—" if row[param] is None else f"{row[param]:g}"
        method = row.get("method_name") or method_name(row["method"])  # older sweep.json
        ratios = [r for r in row["final_feature_spread_ratios"] if r is not None]
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "—"
        lines.append(
            f"| {value} | {method} | {','.join(map(str, row['seeds'])) or 'none finished'} "
            f"| {error_cell(row, 'teacher_test_error')} "
            f"| {error_cell(row, 'student_test_error')} "
            f"| {spread} "
            f"| {','.join(map(str, row['collapsed_seeds'])) or '—'} "
            f"| {error_cell(row, BEST_KEY)} |"
        )
    lines += no_best_test_error_lines(sweep["rows"])
    return "\n".join(lines + incomplete_lines(sweep)) + "\n" + made_by_markdown(sweep)


def write_sweep(stem: str, sweep: dict) -> list[str]:
    """STEM.json, STEM.csv, STEM.md and STEM.png (STEM is ROOT/sweep unless said
    otherwise); returns their paths."""
    from lcmt_tf.plots import plot_sweep

    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    paths = [f"{stem}.{ending}" for ending in ("json", "csv", "md", "png")]
    atomic_write_json(paths[0], sweep)
    columns = (sweep["param"], "method", *ERROR_COLUMNS, "collapsed_seeds",
               "final_feature_spread_ratios")  # fmt: skip
    atomic_write_csv(paths[1], columns, sweep["rows"])
    atomic_write_text(paths[2], markdown(sweep))
    plot_sweep(sweep, paths[3])
    return paths
