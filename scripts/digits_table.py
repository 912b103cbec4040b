"""Reproduce the README's digits table: supervised vs Mean Teacher vs MT+LC.

    python scripts/digits_table.py --seeds=0,1,2 --output=runs/digits_table.json

Runs scripts/train.py for each flag file and seed (label split and initialization
both use the seed), then prints a Markdown table of the teacher's test error
(mean and standard deviation over seeds) and writes every run's results as JSON.
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
FLAGS = flags.FLAGS

SETTINGS = (
    ("supervised only", "flags/digits_supervised.txt"),
    ("Mean Teacher", "flags/digits_mt.txt"),
    ("MT + LC", "flags/digits.txt"),
)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mean_std(values: np.ndarray) -> str:
    """'mean ± sample standard deviation' (± 0 for a single value)."""
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.2f} ± {std:.2f}"


def main(argv):
    del argv
    seeds = [int(seed) for seed in FLAGS.seeds.split(",")]
    records = []
    for label, flagfile in SETTINGS:
        for seed in seeds:
            name = os.path.splitext(os.path.basename(flagfile))[0]
            model_dir = os.path.join(FLAGS.runs_dir, f"{name}_seed{seed}")
            command = [
                sys.executable,
                os.path.join(ROOT, "scripts", "train.py"),
                f"--flagfile={flagfile}",
                f"--label_seed={seed}",
                f"--seed={seed}",
                f"--model_dir={model_dir}",
                "--verbose=0",
                *(f"--{setting}" for setting in FLAGS.set),
            ]
            subprocess.run(command, check=True, cwd=ROOT)
            with open(os.path.join(ROOT, model_dir, "results.json")) as file:
                result = json.load(file)
            records.append(
                {
                    "setting": label,
                    "seed": seed,
                    **{
                        k: result[k]
                        for k in (
                            "teacher_test_error",
                            "student_test_error",
                            "wall_time_s",
                            "epochs_run",
                        )
                    },
                }
            )
            print(
                f"{label:16s} seed {seed}: teacher {result['teacher_test_error']:.2f}% "
                f"({result['wall_time_s']:.0f} s)",
                flush=True,
            )
    print("\n| setting | teacher test error (%) | student test error (%) | wall time per run (s) |")
    print("|---|---|---|---|")
    for label, _ in SETTINGS:
        rows = [r for r in records if r["setting"] == label]
        teacher = np.array([r["teacher_test_error"] for r in rows])
        student = np.array([r["student_test_error"] for r in rows])
        seconds = np.array([r["wall_time_s"] for r in rows])
        print(f"| {label} | {mean_std(teacher)} | {mean_std(student)} | {seconds.mean():.0f} |")
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, "w") as file:
        json.dump(records, file, indent=2)


if __name__ == "__main__":
    app.run(main)
