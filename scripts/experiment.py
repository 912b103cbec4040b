"""Experiments over settings and seeds, as ordinary resumable runs.

    python scripts/experiment.py table --settings=digits --seeds=0-4 \
        --root=runs/digits_table --fork
    python scripts/experiment.py table --settings=cifar10_4000,svhn_500 --seeds=0-9 \
        --root=runs/table1 --fork --parallel=2 --plan

`table`: for each setting S, Mean Teacher (flags/S_mt.txt) and MT+LC (flags/S.txt) for
every seed, in ROOT/S/{mt,mtlc}/seed_K; then ROOT/table.md, table.csv and table.json:
final test errors, mean and sample std over seeds, and the paired MT+LC - MT difference
with its 95 % t-interval. Rerunning the command skips finished runs and resumes the
others. Mistakes in the command end with one line on stderr and exit status 2; the
command exits 1 when a run did not finish (the table holds the runs that did).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from lcmt_tf import experiment  # noqa: E402
from lcmt_tf.errors import UserInputError  # noqa: E402

COMMANDS = ("table",)
flags.DEFINE_list("settings", [], "settings S: flags/S_mt.txt (MT) and flags/S.txt (MT+LC)")
flags.DEFINE_string("seeds", "0-4", "seeds (initialization and label split), e.g. 0-4 or 0,2,7")
flags.DEFINE_string("root", None, "directory of the runs and the table")
flags.DEFINE_boolean("fork", False, "MT+LC runs start from their seed's MT run at LC start")
flags.DEFINE_integer("parallel", 1, "runs at once")
flags.DEFINE_multi_string("set", [], "KEY=VALUE: a train.py flag for every run (repeatable)")
flags.DEFINE_boolean("plan", False, "print the runs, epochs and projected time, and exit")
FLAGS = flags.FLAGS


def fail(message: str) -> None:
    print(f"experiment.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
    try:
        return FLAGS(argv)
    except flags.Error as error:
        fail(str(error).splitlines()[0])


def duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def print_plan(entries: list[dict]) -> None:
    total = 0.0
    for entry in entries:
        seconds = entry["projected_s"]
        total += seconds or 0.0
        projected = "unknown" if seconds is None else duration(seconds)
        print(
            f"{entry['setting']:>16s} {entry['method']:>4s} seed {entry['seed']:<3d} "
            f"{entry['status']:>10s}  {entry['epochs_left']:5d} epochs left  {projected}"
        )
    print(f"projected: {duration(total)} of training, one run at a time")


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        fail(
            f"give one command ({', '.join(COMMANDS)}), e.g. experiment.py table --settings=digits"
        )
    if not FLAGS.settings:
        fail("--settings is empty: name at least one setting, e.g. --settings=digits")
    if not FLAGS.root:
        fail("--root is required: the directory of the runs and the table")
    if FLAGS.parallel < 1:
        fail("--parallel must be >= 1")
    try:
        seeds = experiment.parse_seeds(FLAGS.seeds)
        runs = experiment.plan_table(FLAGS.settings, seeds, FLAGS.root, FLAGS.set, FLAGS.fork)
        if FLAGS.plan:
            print_plan(experiment.plan(runs, measure=experiment.measure_epoch_seconds))
            return
    except UserInputError as error:
        fail(str(error))
    outcomes = experiment.execute(runs, FLAGS.parallel)
    table = experiment.summarize(runs)
    experiment.write_table(FLAGS.root, table)
    print(experiment.markdown(table), end="")
    print(f"written: {os.path.join(FLAGS.root, 'table.md')}, table.csv, table.json")
    if any(outcomes.values()):
        sys.exit(1)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
