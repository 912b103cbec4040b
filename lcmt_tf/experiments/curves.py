"""Test error against epoch for Mean Teacher and MT+LC: the paper's Figure 3.

Every run writes its evaluations to history.csv as it trains; `learning_curves`
averages them over the seeds of each method in `ROOT/S/{mt,mtlc}/seed_K`, at the
epochs where every one of those seeds was evaluated.
"""

from __future__ import annotations

import glob
import json
import math
import os

import numpy as np

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


def learning_curves(root: str, setting: str) -> dict:
    """Per method: the seeds, the evaluated epochs (1-based) and, for the student and
    the teacher, the mean and sample std of the test error over seeds at each of them
    (std null for one seed); and the LC start epoch of the MT+LC runs."""
    curves: dict = {"setting": setting, "methods": {}, "lc_start_epoch": None}
    for method in CURVE_METHODS:
        directories = seed_directories(root, setting, method)
        if not directories:
            continue
        histories = {path: read_history(path) for path in directories}
        evaluated = [
            {int(row["epoch"]): row for row in rows if not math.isnan(row["teacher_test_error"])}
            for rows in histories.values()
        ]
        epochs = sorted(set.intersection(*(set(rows) for rows in evaluated)))
        entry = {"seeds": [int(path.rsplit("_", 1)[-1]) for path in directories], "epochs": epochs}
        for network in NETWORKS:
            values = np.array(
                [[rows[epoch][f"{network}_test_error"] for epoch in epochs] for rows in evaluated]
            ).reshape(len(evaluated), len(epochs))
            entry[f"{network}_test_error_mean"] = values.mean(axis=0).tolist()
            entry[f"{network}_test_error_std"] = (
                values.std(axis=0, ddof=1).tolist() if len(evaluated) > 1 else [None] * len(epochs)
            )
        curves["methods"][method] = entry
        if method == "mtlc":
            with open(os.path.join(directories[0], "config.json")) as file:
                curves["lc_start_epoch"] = json.load(file)["lc_start_epoch"]
    if not curves["methods"]:
        raise UserInputError(
            f"no runs with a history.csv in {os.path.join(root, setting)}/{{mt,mtlc}}/seed_*; "
            "train them with `experiment.py table` first"
        )
    return nan_to_none(curves)


def write_curves(root: str, setting: str) -> list[str]:
    """ROOT/S/curves.json and ROOT/S/curves.png; returns their paths."""
    from lcmt_tf.plots import plot_curves

    curves = learning_curves(root, setting)
    paths = [os.path.join(root, setting, f"curves.{ending}") for ending in ("json", "png")]
    atomic_write_json(paths[0], curves)
    plot_curves(curves, paths[1])
    return paths
