"""Reproduce the README's digits tables: supervised vs Mean Teacher vs MT+LC.

    python scripts/digits_table.py --seeds=0,1,2 --output=runs/digits_table.json
    python scripts/digits_table.py --settings=digits --set=lc_epsilon_quantile=0.1 \\
        --runs_dir=runs/digits_q010 --output=runs/digits_q010.json

Runs scripts/train.py for each flag file and seed (label split and initialization
both use the seed), then prints a Markdown table of the final test errors (mean and
sample standard deviation over seeds) and, in its own labelled column, the best
teacher error over each run's evaluations (selected on the test set); it writes every
run's results as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from absl import app, flags

flags.DEFINE_string("seeds", "0,1,2", "comma-separated label/initialization seeds")
flags.DEFINE_string("output", "runs/digits_table.json", "where to write all results")
flags.DEFINE_string("runs_dir", "runs/digits_table", "parent directory of the runs")
flags.DEFINE_multi_string("set", [], "KEY=VALUE: a train.py flag for every run (repeatable)")
flags.DEFINE_list(
    "settings", ["digits_supervised", "digits_mt", "digits"], "flag files (in flags/) to run"
)
FLAGS = flags.FLAGS

LABELS = {"digits_supervised": "supervised only", "digits_mt": "Mean Teacher", "digits": "MT + LC"}
KEPT = (
    "teacher_test_error",
    "student_test_error",
    "teacher_best_test_error",
    "teacher_best_test_error_epoch",
    "lc_epsilon",
    "wall_time_s",
    "epochs_run",
)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mean_std(values: np.ndarray) -> str:
    """'mean ± sample standard deviation' (± 0 for a single value)."""
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.2f} ± {std:.2f}"


def train(setting: str, seed: int) -> dict:
    model_dir = os.path.join(FLAGS.runs_dir, f"{setting}_seed{seed}")
    command = [
        sys.executable,
        os.path.join(ROOT, "scripts", "train.py"),
        f"--flagfile=flags/{setting}.txt",
        f"--label_seed={seed}",
        f"--seed={seed}",
        f"--model_dir={model_dir}",
        "--verbose=0",
        *(f"--{override}" for override in FLAGS.set),
    ]
    subprocess.run(command, check=True, cwd=ROOT)
    with open(os.path.join(ROOT, model_dir, "results.json")) as file:
        result = json.load(file)
    return {"setting": setting, "seed": seed, **{key: result[key] for key in KEPT}}


def main(argv):
    del argv
    seeds = [int(seed) for seed in FLAGS.seeds.split(",")]
    records = []
    for setting in FLAGS.settings:
        for seed in seeds:
            records.append(train(setting, seed))
            print(
                f"{setting:18s} seed {seed}: teacher {records[-1]['teacher_test_error']:.2f}% "
                f"({records[-1]['wall_time_s']:.0f} s)",
                flush=True,
            )
    print(
        "\n| setting | teacher test error (%) | student test error (%) "
        "| best teacher error over evaluations (%, test-set selection) | wall time per run (s) |"
    )
    print("|---|---|---|---|---|")
    for setting in FLAGS.settings:
        rows = [r for r in records if r["setting"] == setting]
        column = {key: np.array([r[key] for r in rows], float) for key in KEPT[:3]}
        print(
            f"| {LABELS.get(setting, setting)} | {mean_std(column['teacher_test_error'])} "
            f"| {mean_std(column['student_test_error'])} "
            f"| {mean_std(column['teacher_best_test_error'])} "
            f"| {np.mean([r['wall_time_s'] for r in rows]):.0f} |"
        )
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, "w") as file:
        json.dump({"seeds": seeds, "set": FLAGS.set, "runs": records}, file, indent=2)


if __name__ == "__main__":
    app.run(main)
