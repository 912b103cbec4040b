r"""Experiments over settings, seeds and values, as ordinary resumable runs.

    lcmt experiment table --settings=digits --seeds=0-4 \
        --root=runs/digits_experiment --fork
    lcmt experiment sweep --setting=digits --param=lc_epsilon \
        --values=0,0.03,0.1,0.3,1 --seeds=0-4 --root=runs/digits_experiment --fork
    lcmt experiment tune --setting=digits --root=runs/digits_tune --fork \
        --set=validation_fraction=0.2 --space=lc_weight=log:1:30 --tune_seeds=0-1 --seeds=10-19
    lcmt experiment budget --setting=digits --num_labels=20,50,100 --seeds=0-4 \
        --root=runs/digits_budget --fork
    lcmt experiment curves --setting=digits --root=runs/digits_experiment
    lcmt experiment bias --setting=digits --root=runs/digits_experiment
    lcmt experiment tsne --setting=digits --root=runs/digits_experiment

`table`: for each setting S, Mean Teacher (S_mt.txt) and MT+LC (S.txt; flag files from
--flags_dir, else installed) for every seed, in ROOT/S/{mt,mtlc}/seed_K; then
ROOT/table.md, table.csv and table.json: final test errors, mean and sample std over
seeds, and the paired MT+LC - MT difference with its 95 % t-interval. `sweep`: one MT+LC
run per value of --param and seed (value 0 of lc_epsilon or lc_weight: Mean Teacher),
ROOT/sweep.{json,csv,md,png}. `tune`: a search of LC's settings (Optuna) judged on a
validation split only, then Mean Teacher against MT+LC with the chosen values on fresh
seeds (lcmt_tf.experiments.tune), ROOT/S/tune/tune.{json,md}. `budget`: a table per
label count (--num_labels), ROOT/budget.{json,md,png}. `curves`: test error
against epoch from the runs' history.csv, ROOT/S/curves.png. `bias`: the
confirmation-bias diagnostics against epoch (the teacher's error on the unlabeled
images, images fixed and broken, who the misclassified images' neighbours are),
ROOT/S/bias.png and bias.json. `tsne`: t-SNE maps of the final MT and MT+LC features,
ROOT/S/tsne_train.png and tsne_test.png.
Relative paths are relative to the working directory, where every run trains.

Rerunning table or sweep skips finished runs and resumes the others. Mistakes in the
command end with one line on stderr and exit status 2; the command exits 1 when a run
did not finish (the table holds the runs that did).
"""

from __future__ import annotations

import contextlib
import os
import sys

from absl import flags

from lcmt_tf import cli
from lcmt_tf.cli import fail

COMMANDS = ("table", "sweep", "tune", "budget", "curves", "bias", "tsne")


def define_flags() -> None:
    flags.DEFINE_list(
        "settings", [], "table: settings S, with flag files S_mt.txt (MT) and S.txt (MT+LC)"
    )
    flags.DEFINE_string("setting", None, "sweep, curves, tsne: the one setting S")
    flags.DEFINE_list("methods", ["mt", "mtlc"], "table: mt, mtlc and optionally supervised")
    flags.DEFINE_string("param", None, "sweep: the training setting to vary, e.g. lc_epsilon")
    flags.DEFINE_string("values", None, "sweep: its values, e.g. 0,10,50,100,500")
    flags.DEFINE_string("seeds", "0-4", "seeds (initialization and label split), e.g. 0-4 or 0,2,7")
    flags.DEFINE_string("root", None, "directory of the runs and the results")
    flags.DEFINE_string("output", None, "sweep: file stem of its outputs (default ROOT/sweep)")
    flags.DEFINE_list(
        "flags_dir",
        [],
        "folders with your own settings' flag files (S.txt, S_mt.txt), searched before the "
        "installed ones",
    )
    flags.DEFINE_boolean("fork", False, "MT+LC runs start from their seed's MT run at LC start")
    flags.DEFINE_integer("parallel", 1, "runs at once")
    flags.DEFINE_multi_string("set", [], "KEY=VALUE: a train flag for every run (repeatable)")
    flags.DEFINE_boolean("plan", False, "print the runs, epochs and projected time, and exit")
    flags.DEFINE_multi_string(
        "space",
        [],
        "tune: NAME=float:LOW:HIGH, NAME=log:LOW:HIGH, NAME=int:LOW:HIGH or NAME=choice:A|B "
        "(repeatable), e.g. lc_weight=log:1:30",
    )
    flags.DEFINE_integer("trials", 12, "tune: trials of the search")
    flags.DEFINE_string("num_labels", None, "budget: the label counts, e.g. 20,50,100")
    flags.DEFINE_string(
        "tune_seeds", "0", "tune: the seeds every trial trains (the confirmation uses --seeds)"
    )
    flags.DEFINE_integer("seed", 0, "tsne: the seed whose MT and MT+LC runs are mapped")
    flags.DEFINE_list("runs", [], "tsne: run directories to map instead (one panel each)")
    flags.DEFINE_integer("max_points", 2000, "tsne: at most this many images per split")
    flags.DEFINE_string("network", "student", "tsne: student or teacher features")


FLAGS = flags.FLAGS


def duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def print_plan(entries: list[dict]) -> None:
    total = 0.0
    for entry in entries:
        seconds = entry["projected_s"]
        total += seconds or 0.0
        projected = "unknown" if seconds is None else duration(seconds)
        value = f" {entry['value']:g}" if entry.get("value") is not None else ""
        print(
            f"{entry['setting']:>16s} {entry['method']:>4s}{value} seed {entry['seed']:<3d} "
            f"{entry['status']:>10s}  {entry['epochs_left']:5d} epochs left  {projected}"
        )
    print(f"projected: {duration(total)} of training, one run at a time")


def made_by() -> dict:
    """How this command's outputs were made: `lcmt experiment` with its arguments (every
    --set override included) and the software that ran it."""
    import shlex

    from lcmt_tf.provenance import made_by as record

    return record(shlex.join(["lcmt", "experiment", *sys.argv[1:]]))


def required(name: str, example: str) -> str:
    value = FLAGS[name].value
    if not value:
        fail(f"--{name} is required here, e.g. --{name}={example}")
    return value


def train_and_write(runs, write) -> None:
    """Trains what is left of `runs` (or prints the plan), then writes the results."""
    from lcmt_tf.experiments import runner

    if FLAGS.plan:
        print_plan(runner.plan(runs, measure=runner.measure_epoch_seconds))
        return
    try:
        with cli.signals_as_interrupts():
            outcomes = runner.execute(runs, FLAGS.parallel)
    except cli.Interrupted as stop:
        cli.stopped(
            stop,
            f"stopped by {stop.signal_name}; the runs it had started stopped after their last "
            "completed epoch and no new run started; rerun the same command to continue",
        )
    write()
    if any(outcomes.values()):
        sys.exit(1)


def table(root: str, seeds: list[int]) -> None:
    from lcmt_tf.experiments import table

    if not FLAGS.settings:
        fail("--settings is empty: name at least one setting, e.g. --settings=digits")
    runs = table.plan_table(
        FLAGS.settings,
        seeds,
        root,
        FLAGS.set,
        FLAGS.fork,
        flags_dirs=FLAGS.flags_dir,
        methods=FLAGS.methods,
    )

    def write():
        summary = {**table.summarize(runs), "made_by": made_by()}
        table.write_table(root, summary)
        print(table.markdown(summary), end="")
        print(f"written: {os.path.join(root, 'table.md')}, table.csv, table.json")

    train_and_write(runs, write)


def sweep(root: str, seeds: list[int]) -> None:
    from lcmt_tf.experiments import sweep

    setting = required("setting", "svhn_500")
    param = required("param", "lc_epsilon")
    values = sweep.parse_values(required("values", "0,10,50,100,500"), param)
    runs = sweep.plan_sweep(
        setting, param, values, seeds, root, FLAGS.set, FLAGS.fork, flags_dirs=FLAGS.flags_dir
    )

    def write():
        summary = {**sweep.summarize_sweep(runs, param), "made_by": made_by()}
        paths = sweep.write_sweep(FLAGS.output or os.path.join(root, "sweep"), summary)
        print(sweep.markdown(summary), end="")
        print(f"written: {', '.join(paths)}")

    train_and_write(runs, write)


def curves(root: str) -> None:
    from lcmt_tf.experiments.curves import write_curves

    paths = write_curves(root, required("setting", "digits"), made_by())
    print(f"written: {', '.join(paths)}")


def tune(root: str, seeds: list[int]) -> None:
    from lcmt_tf.experiments import runner
    from lcmt_tf.experiments import tune as tuning

    if FLAGS.trials < 1:
        fail("--trials must be >= 1")
    plan = tuning.plan_tuning(
        required("setting", "digits"),
        root,
        tuning.parse_space(FLAGS.space),
        runner.parse_seeds(FLAGS.tune_seeds),
        seeds,
        FLAGS.set,
        FLAGS.fork,
        flags_dirs=FLAGS.flags_dir,
    )
    try:
        with cli.signals_as_interrupts():
            summary, paths = tuning.tune(plan, FLAGS.trials, FLAGS.parallel, made_by=made_by())
    except cli.Interrupted as stop:
        cli.stopped(
            stop,
            f"stopped by {stop.signal_name}; the runs it had started stopped after their last "
            "completed epoch; rerun the same command to continue the search",
        )
    print(tuning.markdown(summary), end="")
    print(f"written: {', '.join(paths)}")


def budget(root: str, seeds: list[int]) -> None:
    from lcmt_tf.experiments import budget as budgets

    runs = budgets.plan_budget(
        required("setting", "digits"),
        budgets.parse_budgets(required("num_labels", "20,50,100")),
        seeds,
        root,
        FLAGS.set,
        FLAGS.fork,
        flags_dirs=FLAGS.flags_dir,
    )

    def write():
        summary = {**budgets.summarize_budget(runs), "made_by": made_by()}
        paths = budgets.write_budget(root, summary)
        print(budgets.markdown(summary), end="")
        print(f"written: {', '.join(paths)}")

    train_and_write([run for budget_runs in runs.values() for run in budget_runs], write)


def bias(root: str) -> None:
    from lcmt_tf.experiments.curves import write_bias

    paths = write_bias(root, required("setting", "digits"), made_by())
    print(f"written: {', '.join(paths)}")


def tsne(root: str) -> None:
    from lcmt_tf.experiments.tsne import tsne_figures

    if FLAGS.max_points < 10:
        fail("--max_points must be >= 10")
    if FLAGS.runs:
        model_dirs, titles = FLAGS.runs, [os.path.basename(os.path.normpath(d)) for d in FLAGS.runs]
        output_dir = root
    else:
        setting = required("setting", "digits")
        model_dirs = [os.path.join(root, setting, m, f"seed_{FLAGS.seed}") for m in ("mt", "mtlc")]
        titles = [f"Mean Teacher, seed {FLAGS.seed}", f"MT + LC, seed {FLAGS.seed}"]
        output_dir = os.path.join(root, setting)
    tsne_figures(model_dirs, titles, output_dir, FLAGS.max_points, FLAGS.network, FLAGS.seed)
    print(f"written: {os.path.join(output_dir, 'tsne_train.png')}, tsne_test.png, tsne.json")


def experiment(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        fail(
            f"give one command ({', '.join(COMMANDS)}), "
            f"e.g. {cli.program()} table --settings=digits"
        )
    command = argv[1]
    root = required("root", "runs/digits_experiment")
    if FLAGS.parallel < 1:
        fail("--parallel must be >= 1")
    if command in ("table", "sweep", "tune", "budget"):
        from lcmt_tf.experiments.runner import parse_seeds
        from lcmt_tf.run_dir.lock import holding_root

        seeds = parse_seeds(FLAGS.seeds)
        with contextlib.nullcontext() if FLAGS.plan else holding_root(root):
            {"table": table, "sweep": sweep, "tune": tune, "budget": budget}[command](root, seeds)
    else:
        {"curves": curves, "bias": bias, "tsne": tsne}[command](root)


def main() -> None:
    cli.run(experiment, define_flags, __doc__)


if __name__ == "__main__":
    main()
