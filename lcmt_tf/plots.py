"""The figures, with matplotlib (the `experiments` extra): a sweep's error against the
value (Figures 4-5), test-error curves (Figure 3), t-SNE maps (Figures 6-7) and a run's
confusion matrix (evaluate). Each takes the numbers its command computed and writes one
PNG; matplotlib is imported only when a figure is drawn."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lcmt_tf.errors import MissingExtraError
from lcmt_tf.files import atomic_write

METHOD_LABELS = {"mt": "Mean Teacher", "mtlc": "MT + LC", "supervised": "supervised only"}
METHOD_COLORS = {"mt": "tab:blue", "mtlc": "tab:red", "supervised": "tab:gray"}


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend; a clear error without it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtraError(
            "the figures need matplotlib: pip install 'lcmt_tf[experiments]'"
        ) from None
    return plt


def save(figure, path: str) -> None:
    atomic_write(path, lambda temporary: figure.savefig(temporary, dpi=110, format="png"))
    pyplot().close(figure)


def _none_to_nan(values: Sequence) -> np.ndarray:
    return np.array([np.nan if value is None else value for value in values], dtype=float)


def plot_sweep(sweep: dict, path: str) -> None:
    """Final teacher and student test error (mean ± sample std over seeds) against the
    swept value, evenly spaced; Mean Teacher as a horizontal reference line with its
    ±1 std band; every seed of a collapsed run marked with an x."""
    plt = pyplot()
    param = sweep["param"]
    lc_rows = [row for row in sweep["rows"] if row["method"] == "mtlc"]
    mt_rows = [row for row in sweep["rows"] if row["method"] == "mt" and row["seeds"]]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    positions = np.arange(len(lc_rows))
    for axis, network in zip(axes, ("teacher", "student")):
        key = f"{network}_test_error"
        means = _none_to_nan([row[f"{key}_mean"] for row in lc_rows])
        stds = np.nan_to_num(_none_to_nan([row[f"{key}_std"] for row in lc_rows]))
        axis.errorbar(
            positions,
            means,
            yerr=stds,
            fmt="o-",
            capsize=4,
            color=METHOD_COLORS["mtlc"],
            label="MT + LC (mean ± std)",
        )
        for position, row in zip(positions, lc_rows):
            bad = [row[f"{key}s"][row["seeds"].index(s)] for s in row["collapsed_seeds"]]
            axis.scatter(
                [position] * len(bad),
                bad,
                marker="x",
                s=60,
                color="black",
                zorder=3,
                label="collapsed run" if bad else None,
            )
        for row in mt_rows:
            mean, std = row[f"{key}_mean"], row[f"{key}_std"] or 0.0
            axis.axhline(
                mean,
                color=METHOD_COLORS["mt"],
                linestyle="--",
                label=f"Mean Teacher ({param} = 0)" if row[param] == 0 else "Mean Teacher",
            )
            axis.axhspan(mean - std, mean + std, color=METHOD_COLORS["mt"], alpha=0.12)
        axis.set_xticks(positions, [f"{row[param]:g}" for row in lc_rows])
        axis.set_xlabel(param)
        axis.set_title(f"{network}, final epoch")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("test error (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    axes[0].legend(unique.values(), unique.keys(), fontsize=8)
    seeds = sorted({seed for row in sweep["rows"] for seed in row["seeds"]})
    figure.suptitle(f"{sweep['setting']}: sweep of {param} (seeds {','.join(map(str, seeds))})")
    figure.tight_layout()
    save(figure, path)


def plot_curves(curves: dict, path: str) -> None:
    """Student and teacher test error against epoch for each method: mean over seeds,
    band ±1 std, the LC start epoch marked."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, network in zip(axes, ("student", "teacher")):
        # MT+LC first, so that Mean Teacher is drawn over the epochs a forked pair shares.
        for method, entry in sorted(curves["methods"].items(), reverse=True):
            epochs = np.array(entry["epochs"])
            mean = _none_to_nan(entry[f"{network}_test_error_mean"])
            std = np.nan_to_num(_none_to_nan(entry[f"{network}_test_error_std"]))
            label = f"{METHOD_LABELS[method]} ({len(entry['seeds'])} seeds)"
            axis.plot(epochs, mean, color=METHOD_COLORS[method], label=label)
            axis.fill_between(
                epochs, mean - std, mean + std, color=METHOD_COLORS[method], alpha=0.2, linewidth=0
            )
        if curves["lc_start_epoch"] is not None:
            axis.axvline(
                curves["lc_start_epoch"],
                color="gray",
                linestyle=":",
                label=f"LC starts (epoch {curves['lc_start_epoch']})",
            )
        axis.set_xlabel("epoch")
        axis.set_title(f"{network}")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("test error (%)")
    axes[0].legend(fontsize=8)
    figure.suptitle(f"{curves['setting']}: test error during training (mean ± std over seeds)")
    figure.tight_layout()
    save(figure, path)


# The panels of plot_bias: (title, [(column, line style, label)]).
BIAS_PANELS = (
    ("teacher error on the unlabeled images (%)", [("unlabeled_teacher_error", "-", "")]),
    (
        "since the previous evaluation (images)",
        [("unlabeled_fixed", "-", "fixed"), ("unlabeled_broken", "--", "broken")],
    ),
    (
        "ε-neighbours of the misclassified images (share)",
        [
            ("misclassified_neighbors_same_wrong", "-", "same wrong prediction"),
            ("misclassified_neighbors_true_class", "--", "correct, true class"),
        ],
    ),
    ("misclassified images without an ε-neighbour (share)", [("misclassified_isolated", "-", "")]),
    ("pairs within ε (share)", [("unlabeled_neighbor_fraction", "-", "")]),
    (
        "pair distances in z",
        [
            ("unlabeled_distance_p10", ":", "p10"),
            ("unlabeled_distance_p50", "-", "p50"),
            ("unlabeled_distance_p90", "--", "p90"),
        ],
    ),
)


def plot_bias(curves: dict, path: str) -> None:
    """The confirmation-bias diagnostics against epoch for each method (mean over
    seeds), one panel per question, the LC start epoch marked."""
    plt = pyplot()
    figure, axes = plt.subplots(2, 3, figsize=(15, 8))
    for axis, (title, lines) in zip(axes.ravel(), BIAS_PANELS):
        for method, entry in sorted(curves["methods"].items(), reverse=True):
            for column, style, label in lines:
                method_label = f"{METHOD_LABELS[method]} ({len(entry['seeds'])} seeds)"
                axis.plot(
                    entry["epochs"],
                    _none_to_nan(entry[f"{column}_mean"]),
                    style,
                    color=METHOD_COLORS[method],
                    label=f"{method_label}{', ' + label if label else ''}",
                )
        if curves["lc_start_epoch"] is not None:
            axis.axvline(curves["lc_start_epoch"], color="gray", linestyle=":")
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6)
    start = curves["lc_start_epoch"]
    figure.suptitle(
        f"{curves['setting']}: confirmation bias at each evaluation (mean over seeds"
        f"{f'; LC starts at epoch {start}, dotted' if start is not None else ''})"
    )
    figure.tight_layout()
    save(figure, path)


def plot_tsne(
    panels: Sequence[dict], path: str, color_by: str, class_names: Sequence[str] | None = None
) -> None:
    """Side-by-side t-SNE maps, one panel per run ({"title", "points" (n, 2),
    "labels", "labeled"}). color_by="labeled": labeled images against unlabeled ones;
    "class": one colour per class."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5.5), squeeze=False)
    for axis, panel in zip(axes[0], panels):
        points = np.asarray(panel["points"])
        if color_by == "labeled":
            labeled = np.asarray(panel["labeled"], dtype=bool)
            axis.scatter(*points[~labeled].T, s=4, color="tab:gray", alpha=0.5, label="unlabeled")
            axis.scatter(*points[labeled].T, s=14, color="tab:red", label="labeled")
        else:
            labels = np.asarray(panel["labels"])
            colors = plt.get_cmap("tab10" if labels.max() < 10 else "tab20")
            for label in np.unique(labels):
                name = class_names[label] if class_names else str(label)
                axis.scatter(*points[labels == label].T, s=4, color=colors(label % 20), label=name)
        axis.set_title(panel["title"], fontsize=10)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.legend(fontsize=7, markerscale=2, loc="best")
    figure.tight_layout()
    save(figure, path)


def plot_confusion(matrix: np.ndarray, names: Sequence[str], path: str) -> None:
    """The teacher's confusion matrix, rows normalized, counts written in the cells."""
    plt = pyplot()
    size = max(4.0, 0.5 * len(names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(matrix):
        color = "white" if shares[row, column] > 0.5 else "black"
        axis.text(column, row, str(count), ha="center", va="center", fontsize=7, color=color)
    axis.set_xticks(range(len(names)), names, rotation=90)
    axis.set_yticks(range(len(names)), names)
    axis.set_xlabel("predicted class (teacher)")
    axis.set_ylabel("true class")
    figure.tight_layout()
    save(figure, path)


# Prediction


def plot_reliability(calibration: dict, path: str) -> None:
    """The teacher's reliability diagram: accuracy against confidence per bin (bars),
    the diagonal of perfect calibration, and the ECE."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5, 5))
    bins = [b for b in calibration["bins"] if b["count"]]
    axis.bar(
        [(b["low"] + b["high"]) / 2 for b in bins],
        [b["accuracy"] for b in bins],
        width=[b["high"] - b["low"] for b in bins],
        edgecolor="black",
        alpha=0.7,
        label="accuracy",
    )
    axis.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    axis.set_xlabel("teacher confidence")
    axis.set_ylabel("accuracy")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.legend(loc="upper left", fontsize=8)
    axis.set_title(
        f"{calibration['measured_on']} ({calibration['images']} images): "
        f"ECE {calibration['expected_calibration_error']:.4f}",
        fontsize=9,
    )
    figure.tight_layout()
    save(figure, path)


def plot_budget(summary: dict, path: str) -> None:
    """Final teacher test error against the number of labels, per method (mean, band
    ±1 std over seeds); below it, the paired MT+LC - MT difference with its interval."""
    plt = pyplot()
    figure, (errors, differences) = plt.subplots(
        2, 1, figsize=(6, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    budgets = [entry["num_labels"] for entry in summary["budgets"]]
    methods = dict.fromkeys(row["method"] for e in summary["budgets"] for row in e["rows"])
    for method in methods:
        rows = [
            next((row for row in entry["rows"] if row["method"] == method), None)
            for entry in summary["budgets"]
        ]
        mean = _none_to_nan([row and row["teacher_test_error_mean"] for row in rows])
        std = np.nan_to_num(_none_to_nan([row and row["teacher_test_error_std"] for row in rows]))
        color = METHOD_COLORS.get(method, "gray")
        errors.plot(budgets, mean, "o-", color=color, label=METHOD_LABELS.get(method, method))
        errors.fill_between(budgets, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
    errors.set_ylabel("final teacher test error (%)")
    errors.legend(fontsize=8)
    errors.grid(alpha=0.3)
    mean = _none_to_nan([e["paired"]["teacher_difference_mean"] for e in summary["budgets"]])
    intervals = [e["paired"]["teacher_difference_ci95"] or [None, None] for e in summary["budgets"]]
    low = _none_to_nan([i[0] for i in intervals])
    high = _none_to_nan([i[1] for i in intervals])
    differences.errorbar(
        budgets, mean, yerr=[mean - low, high - mean], fmt="o", color="black", capsize=3
    )
    differences.axhline(0.0, color="gray", linestyle=":")
    differences.set_ylabel("MT + LC − MT (points)")
    differences.set_xlabel("labels")
    differences.set_xscale("log")
    differences.grid(alpha=0.3)
    figure.suptitle(f"{summary['setting']}: error against the label budget (mean ± std)")
    figure.tight_layout()
    save(figure, path)
