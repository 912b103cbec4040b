"""The label-budget curve: error against the number of labels, for supervised
training, Mean Teacher and MT+LC.

For each budget N, a table of setting S (`lcmt_tf.experiments.table`) with
`--num_labels=N` in ROOT/labels_N/: Mean Teacher and MT+LC (forked pairs with `fork`)
and, when the setting has one, supervised only (S_supervised.txt), for every seed.
Then ROOT/budget.{json,md,png}: the final teacher test error against N per method
(mean ± sample std over seeds) and, per budget, the paired MT+LC - MT difference with
its 95 % interval.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from lcmt_tf.errors import UserInputError
from lcmt_tf.experiments import table
from lcmt_tf.experiments.runner import Run, flag_file, nan_to_none
from lcmt_tf.files import atomic_write_json, atomic_write_text
from lcmt_tf.provenance import made_by_markdown


def parse_budgets(text: str) -> list[int]:
    """'20,50,100' -> [20, 50, 100]."""
    try:
        budgets = [int(value) for value in text.split(",") if value.strip()]
    except ValueError:
        budgets = []
    if not budgets or min(budgets) < 1 or len(set(budgets)) != len(budgets):
        raise UserInputError(f"--num_labels={text!r}: give distinct label counts, e.g. 20,50,100")
    return sorted(budgets)


def plan_budget(
    setting: str,
    budgets: Sequence[int],
    seeds: Sequence[int],
    root: str,
    overrides: Sequence[str] = (),
    fork: bool = False,
    flags_dirs: Sequence[str] = (),
) -> dict[int, list[Run]]:
    """{budget: the runs of its table}; every flag file checked before anything runs."""
    methods = ["mt", "mtlc"]
    if os.path.isfile(flag_file(setting, "supervised", flags_dirs)):
        methods.insert(0, "supervised")
    return {
        budget: table.plan_table(
            [setting],
            seeds,
            os.path.join(root, f"labels_{budget}"),
            [*overrides, f"num_labels={budget}"],
            fork,
            flags_dirs,
            methods,
        )  # fmt: skip
        for budget in budgets
    }


def summarize_budget(runs: dict[int, list[Run]]) -> dict:
    """Per budget, the table's rows and its paired MT+LC - MT difference."""
    entries = []
    for budget, budget_runs in sorted(runs.items()):
        summary = table.summarize(budget_runs)
        entries.append(
            {
                "num_labels": budget,
                "rows": summary["rows"],
                "paired": summary["paired"][0],
                "incomplete": summary["incomplete"],
            }
        )
    setting = next(iter(runs.values()))[0].setting
    return nan_to_none({"setting": setting, "budgets": entries})


def markdown(summary: dict) -> str:
    lines = [
        f"# {summary['setting']}: final teacher test error (%) against the number of labels",
        "",
        "| labels | method | seeds | teacher error | with LC − without, paired (95 % interval) |",
        "|---|---|---|---|---|",
    ]
    for entry in summary["budgets"]:
        paired = entry["paired"]
        for row in entry["rows"]:
            difference = ""
            if row["method"] == "mtlc" and paired["teacher_difference_mean"] is not None:
                low, high = paired["teacher_difference_ci95"]
                interval = "" if low is None else f" [{low:+.2f}, {high:+.2f}]"
                difference = f"{paired['teacher_difference_mean']:+.2f}{interval}"
            name = row.get("method_name", row["method"])
            lines.append(
                f"| {entry['num_labels']} | {name} | {len(row['seeds'])} "
                f"| {table.error_cell(row, 'teacher_test_error')} | {difference} |"
            )
    return "\n".join(lines) + "\n" + made_by_markdown(summary)


def write_budget(root: str, summary: dict) -> list[str]:
    """ROOT/budget.json, budget.md and budget.png; returns their paths."""
    from lcmt_tf.plots import plot_budget

    paths = [os.path.join(root, f"budget.{ending}") for ending in ("json", "md", "png")]
    atomic_write_json(paths[0], summary)
    atomic_write_text(paths[1], markdown(summary))
    plot_budget(summary, paths[2])
    return paths
