"""Values against epoch for Mean Teacher and MT+LC: the test error (the paper's Figure
3) and the confirmation-bias diagnostics.

Every run writes its evaluations to history.csv as it trains; `mean_curves` averages
them over the seeds of each method in `ROOT/S/{mt,mtlc}/seed_K`, at the epochs where
every one of those seeds was evaluated.
"""

from __future__ import annotations

import glob
import json
import math
import os

import numpy as np

from lcmt_tf.diagnostics import NAMES as DIAGNOSTICS
from lcmt_tf.diagnostics import PSEUDO_LABEL_NAMES
from lcmt_tf.errors import UserInputError
from lcmt_tf.experiments.runner import nan_to_none, read_history
from lcmt_tf.files import atomic_write_json

CURVE_METHODS = ("mt", "mtlc")
NETWORKS = ("student", "teacher")


def seed_directories(root: str, setting: str, method: str) -> list[str]:
    """ROOT/S/METHOD/seed_K directories that hold a history.csv, by seed."""
    found = glob.glob(os.path.join(root, setting, method, "seed_*", "history.csv"))
    directories = [os.path.dirname(path) for path in found]
    return sorted(directories, key=lambda path: int(path.rsplit("_", 1)[-1]))


def mean_curves(root: str, setting: str, columns: list[str], evaluated_by: str) -> dict:
    """Per method (mt, mtlc): the seeds, the epochs (1-based) at which every seed logged
    `evaluated_by`, and for each of `columns` the mean and sample std over seeds at
    those epochs (`COLUMN_mean`, `COLUMN_std`; std null for one seed, a value null
    where some seed had none); and the LC start epoch of the MT+LC runs."""
    curves: dict = {"setting": setting, "methods": {}, "lc_start_epoch": None}
    for method in CURVE_METHODS:
        directories = seed_directories(root, setting, method)
        if not directories:
            continue
        evaluated = [
            {
                int(row["epoch"]): row
                for row in read_history(path)
                if not math.isnan(row.get(evaluated_by, math.nan))
            }
            for path in directories
        ]
        epochs = sorted(set.intersection(*(set(rows) for rows in evaluated)))
        entry = {"seeds": [int(path.rsplit("_", 1)[-1]) for path in directories], "epochs": epochs}
        for column in columns:
            values = np.array(
                [[rows[epoch].get(column, math.nan) for epoch in epochs] for rows in evaluated]
            ).reshape(len(evaluated), len(epochs))
            entry[f"{column}_mean"] = values.mean(axis=0).tolist()
            entry[f"{column}_std"] = (
                values.std(axis=0, ddof=1).tolist() if len(evaluated) > 1 else [None] * len(epochs)
            )
        curves["methods"][method] = entry
        if method == "mtlc":
            with open(os.path.join(directories[0], "config.json")) as file:
                curves["lc_start_epoch"] = json.load(file)["lc_start_epoch"]
    if not curves["methods"]:
        raise UserInputError(
            f"no runs with a history.csv in {os.path.join(root, setting)}/{{mt,mtlc}}/seed_*; "
            "train them with `lcmt experiment table` first"
        )
    return nan_to_none(curves)


def learning_curves(root: str, setting: str) -> dict:
    """`mean_curves` of the student's and the teacher's test error (the paper's
    Figure 3)."""
    columns = [f"{network}_test_error" for network in NETWORKS]
    return mean_curves(root, setting, columns, "teacher_test_error")


def bias_curves(root: str, setting: str) -> dict:
    """`mean_curves` of the confirmation-bias diagnostics (lcmt_tf.diagnostics) at the
    runs' evaluations (with FixMatch's pseudo-label error and mask rate, null for Mean
    Teacher); an error if the runs logged none (--diagnostics_sample=0, or unlabeled
    images without known labels)."""
    columns = [*DIAGNOSTICS, *PSEUDO_LABEL_NAMES]
    curves = mean_curves(root, setting, columns, "unlabeled_teacher_error")
    if not any(entry["epochs"] for entry in curves["methods"].values()):
        raise UserInputError(
            f"the runs in {os.path.join(root, setting)} logged no confirmation-bias "
            "diagnostics: they need unlabeled images with known labels and "
            "--diagnostics_sample > 0"
        )
    return curves


def write_curves(root: str, setting: str, made_by: dict | None = None) -> list[str]:
    """ROOT/S/curves.json and ROOT/S/curves.png; returns their paths."""
    from lcmt_tf.plots import plot_curves

    return _write(root, setting, "curves", learning_curves, plot_curves, made_by)


def write_bias(root: str, setting: str, made_by: dict | None = None) -> list[str]:
    """ROOT/S/bias.json and ROOT/S/bias.png; returns their paths."""
    from lcmt_tf.plots import plot_bias

    return _write(root, setting, "bias", bias_curves, plot_bias, made_by)


def _write(root: str, setting: str, name: str, compute, plot, made_by=None) -> list[str]:
    curves = compute(root, setting)
    if made_by:
        curves["made_by"] = made_by
    paths = [os.path.join(root, setting, f"{name}.{ending}") for ending in ("json", "png")]
    atomic_write_json(paths[0], curves)
    plot(curves, paths[1])
    return paths
