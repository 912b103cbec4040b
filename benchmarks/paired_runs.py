"""The paired difference of two sets of finished runs, seed by seed, from their results.

    python benchmarks/paired_runs.py \\
        --treated=runs/fixmatch_tune/digits_fixmatch/tune/confirm/mt --treated_name=FixMatch \\
        --control=runs/mt_seeds_10_19/digits/mt --control_name="Mean Teacher" \\
        --output=docs/results/digits_fixmatch_vs_mt.json

Each folder holds one run per seed (`seed_N/results.json`, as `lcmt experiment` lays them
out). For the seeds both folders finished, it reports `--metric` of each run, each side's
mean ± sample std and treated − control with its 95 % Student-t interval
(`lcmt_tf.experiments.statistics.paired_difference`), for two studies whose runs share
seeds (label split and initialization) but were not made by one command.
"""

from __future__ import annotations

import os
import re
import shlex
import sys

from absl import app, flags

flags.DEFINE_string("treated", None, "folder of seed_N runs (the left side of the difference)")
flags.DEFINE_string("control", None, "folder of seed_N runs (the right side)")
flags.DEFINE_string("treated_name", "treated", "the treated runs' name in the output")
flags.DEFINE_string("control_name", "control", "the control runs' name in the output")
flags.DEFINE_string("metric", "teacher_test_error", "a number in every results.json")
flags.DEFINE_string("output", "", "write the record as JSON here")
flags.mark_flags_as_required(["treated", "control"])
FLAGS = flags.FLAGS


def finished(folder: str, metric: str) -> dict[int, float]:
    """{seed: metric} of the completed runs under `folder`."""
    from lcmt_tf.experiments.runner import read_results

    values = {}
    for name in sorted(os.listdir(folder)):
        match = re.fullmatch(r"seed_(\d+)", name)
        results = read_results(os.path.join(folder, name)) if match else None
        if results and results.get("completed"):
            values[int(match.group(1))] = float(results[metric])
    return values


def main(argv):
    del argv
    from lcmt_tf.cli import fail
    from lcmt_tf.experiments.statistics import mean_std, paired_difference
    from lcmt_tf.files import atomic_write_json
    from lcmt_tf.provenance import made_by

    for folder in (FLAGS.treated, FLAGS.control):
        if not os.path.isdir(folder):
            fail(f"{folder} is not a folder")
    treated = finished(FLAGS.treated, FLAGS.metric)
    control = finished(FLAGS.control, FLAGS.metric)
    seeds = sorted(set(treated) & set(control))
    if not seeds:
        fail("no seed finished in both folders")
    sides = {}
    for name, values in ((FLAGS.treated_name, treated), (FLAGS.control_name, control)):
        mean, std = mean_std([values[seed] for seed in seeds])
        sides[name] = {
            "values": {str(seed): values[seed] for seed in seeds},
            "mean": mean,
            "std": std,
        }
    paired = paired_difference([treated[s] for s in seeds], [control[s] for s in seeds])
    record = {
        "metric": FLAGS.metric,
        "seeds": seeds,
        "treated": {"name": FLAGS.treated_name, "folder": FLAGS.treated},
        "control": {"name": FLAGS.control_name, "folder": FLAGS.control},
        "methods": sides,
        "paired": paired,
        **made_by(shlex.join(["python", "benchmarks/paired_runs.py", *sys.argv[1:]])),
    }
    for name, side in sides.items():
        print(f"{name}: {side['mean']:.2f} ± {side['std']:.2f} over seeds {seeds}")
    low, high = paired["ci"]
    print(
        f"{FLAGS.treated_name} − {FLAGS.control_name}: {paired['mean']:+.2f}, "
        f"95 % interval [{low:+.2f}, {high:+.2f}]"
    )
    if FLAGS.output:
        atomic_write_json(FLAGS.output, record)


if __name__ == "__main__":
    app.run(main)
