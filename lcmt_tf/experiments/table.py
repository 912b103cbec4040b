"""The paper's Table I for any settings and seeds: Mean Teacher against MT+LC (or
FixMatch against FixMatch + LC).

For each setting S and seed K the table trains `flags/S_mt.txt` (method "mt") and
`flags/S.txt` ("mtlc") (for a setting with an LC twin, S.txt and S_lc.txt), and with
`methods` including "supervised" also `flags/S_supervised.txt`, in
`ROOT/S/METHOD/seed_K` with `--seed=K --label_seed=K`. With `fork`, each MT+LC run
starts from its seed's MT run at the LC start epoch (`--fork_from`), so the pair shares
those epochs exactly. The table holds final-epoch errors; the best error over
evaluations (test-set selection) only in its own labelled column.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from lcmt_tf.errors import UserInputError
from lcmt_tf.experiments.runner import (
    METHODS,
    Run,
    finished_results,
    flag_files,
    method_name,
    nan_to_none,
    override_args,
    resolve,
    run_args,
    unfinished,
)
from lcmt_tf.experiments.statistics import mean_std, paired_difference
from lcmt_tf.files import atomic_write_csv, atomic_write_json, atomic_write_text
from lcmt_tf.provenance import made_by_markdown

DEFAULT_METHODS = ("mt", "mtlc")
ERROR_KEYS = ("teacher_test_error", "student_test_error", "teacher_best_test_error")
# A run that evaluated a validation split selected its best error there: it has no
# best test error, and its rows show none (NaN, "—" in table.md).
BEST_KEY = "teacher_best_test_error"


def run_directory(root: str, setting: str, method: str, seed: int) -> str:
    return os.path.join(root, setting, method, f"seed_{seed}")


def plan_table(
    settings: Sequence[str],
    seeds: Sequence[int],
    root: str,
    overrides: Sequence[str] = (),
    fork: bool = False,
    flags_dirs: Sequence[str] = (),
    methods: Sequence[str] = DEFAULT_METHODS,
) -> list[Run]:
    """The runs of a table, in METHODS order (a fork's source comes before it).
    Checks that every flag file exists and resolves (with the overrides) before
    anything runs."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not {"mt", "mtlc"} <= set(methods):
        raise UserInputError(
            f"--methods={','.join(methods)}: give mt and mtlc, and optionally supervised"
        )
    extra = override_args(overrides)
    runs = []
    for setting in settings:
        files = flag_files(setting, methods, flags_dirs)
        lc_start = resolve([f"--flagfile={files['mtlc']}", *extra])["lc_start_epoch"]
        for method in methods:
            if method != "mtlc":
                resolve([f"--flagfile={files[method]}", *extra])
        for seed in seeds:
            for method in methods:
                model_dir = run_directory(root, setting, method, seed)
                args = run_args(files[method], extra, seed, model_dir)
                after = None
                if fork and method == "mt":
                    args.append(f"--keep_epochs={lc_start}")
                if fork and method == "mtlc":
                    after = run_directory(root, setting, "mt", seed)
                    args.append(f"--fork_from={after}")
                runs.append(Run(setting, method, seed, model_dir, tuple(args), after))
    return sorted(runs, key=lambda run: METHODS.index(run.method))


def summarize(runs: Sequence[Run]) -> dict:
    """Table I from the runs' results.json: per setting and method the final test
    errors over the finished seeds, and per setting the paired MT+LC − MT difference."""
    finished = finished_results(runs)
    rows, paired = [], []
    for setting in dict.fromkeys(run.setting for run in runs):
        by_method = {}
        for method in METHODS:
            values = {
                run.seed: finished[run.model_dir]
                for run in runs
                if (run.setting, run.method) == (setting, method) and run.model_dir in finished
            }
            if any(run.method == method for run in runs):
                by_method[method] = values
                names = {"setting": setting, "method": method,
                         "method_name": method_name(method, list(values.values()))}  # fmt: skip
                rows.append(error_row(names, values))
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
    return nan_to_none({"rows": rows, "paired": paired, "incomplete": unfinished(runs, finished)})


def error_row(names: dict, values: dict[int, dict]) -> dict:
    """`names` plus, over the seeds of `values` ({seed: results}), the mean, sample
    std and per-seed list of each of ERROR_KEYS, and the wall times."""
    seeds = sorted(values)
    row: dict = {**names, "seeds": seeds}
    for key in ERROR_KEYS:
        errors = [values[seed].get(key, math.nan) if key == BEST_KEY else values[seed][key]
                  for seed in seeds]  # fmt: skip
        row[f"{key}_mean"], row[f"{key}_std"] = mean_std(errors)
        row[f"{key}s"] = errors
    row["wall_time_s"] = [values[seed]["wall_time_s"] for seed in seeds]
    return row


def error_cell(row: dict, key: str) -> str:
    """'mean ± std' of `key` in a row; '—' without finished seeds, no std for one."""
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    if mean is None:
        return "—"
    return f"{mean:.2f}" + ("" if std is None else f" ± {std:.2f}")


def no_best_test_error_lines(rows: list[dict]) -> list[str]:
    """The line that says why a row with finished seeds shows no best test error."""
    if not any(row[f"{BEST_KEY}_mean"] is None and row["seeds"] for row in rows):
        return []
    return [
        "",
        "— in the best-over-evaluations column: those runs evaluated a validation split "
        "during training, so they have no best test error.",
    ]


def incomplete_lines(table: dict) -> list[str]:
    if not table["incomplete"]:
        return []
    lines = ["", "Not in the table (not finished):", ""]
    for item in table["incomplete"]:
        reason = f": {item['stop_reason']}" if item["stop_reason"] else ""
        value = f" value {item['value']}" if "value" in item else ""
        run = f"{item['setting']} {item['method']}{value} seed {item['seed']}"
        lines.append(f"- {run}: {item['status']}{reason}")
    return lines


def markdown(table: dict) -> str:
    """table.md: final errors (mean ± sample std over seeds), the paired differences,
    and the best-over-evaluations errors in their own, labelled column."""
    lines = [
        "| setting | method | seeds | teacher test error (%), final | student test error (%), "
        "final | best teacher error over evaluations (%, test-set selection) |",
        "|---|---|---|---|---|---|",
    ]
    for row in table["rows"]:
        seeds = ",".join(map(str, row["seeds"])) or "none finished"
        lines.append(
            f"| {row['setting']} | {row['method_name']} | {seeds} "
            f"| {error_cell(row, 'teacher_test_error')} "
            f"| {error_cell(row, 'student_test_error')} "
            f"| {error_cell(row, BEST_KEY)} |"
        )
    lines += no_best_test_error_lines(table["rows"])
    lines += [
        "",
        "Paired difference with LC − without LC (MT+LC − MT; FixMatch+LC − FixMatch), final "
        "teacher test error (percentage points; negative: LC helps), per seed, mean and 95 % "
        "t-interval:",
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
    return "\n".join(lines + incomplete_lines(table)) + "\n" + made_by_markdown(table)


# The columns of an error row (`error_row`) that table.csv and sweep.csv hold.
ERROR_COLUMNS = (
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
CSV_COLUMNS = ("setting", "method", *ERROR_COLUMNS)


def write_table(root: str, table: dict) -> None:
    """ROOT/table.json, table.csv and table.md, each written atomically."""
    os.makedirs(root, exist_ok=True)
    atomic_write_json(os.path.join(root, "table.json"), table)
    atomic_write_csv(os.path.join(root, "table.csv"), CSV_COLUMNS, table["rows"])
    atomic_write_text(os.path.join(root, "table.md"), markdown(table))
