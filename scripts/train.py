"""Train Mean Teacher + Local Clustering.

    python scripts/train.py --flagfile=flags/digits.txt
    python scripts/train.py --flagfile=flags/cifar10_2000.txt \
        --dataset=folder:../shared/data/cifar10

Every flag is a field of lcmt_tf.config.TrainConfig, where its help text lives;
`--helpfull` lists them.
Mistakes in flags, data or paths end with one line on stderr and exit status 2.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags, logging  # noqa: E402

from lcmt_tf import cli  # noqa: E402
from lcmt_tf.config import TrainConfig  # noqa: E402


def define_flags() -> None:
    """One flag per TrainConfig field, with the field's default and help text."""
    for field in dataclasses.fields(TrainConfig):
        default, help_text = field.default, field.metadata["help"]
        if isinstance(default, bool):
            flags.DEFINE_boolean(field.name, default, help_text)
        elif isinstance(default, int):
            flags.DEFINE_integer(field.name, default, help_text)
        elif isinstance(default, float):
            flags.DEFINE_float(field.name, default, help_text)
        else:
            flags.DEFINE_string(field.name, default, help_text)
    flags.DEFINE_boolean("dry_run", False, "print the resolved configuration as JSON and exit")
    flags.DEFINE_boolean(
        "check_data", False, "print a summary of the data and its problems, and exit"
    )


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    values = {
        field.name: flags.FLAGS[field.name].value for field in dataclasses.fields(TrainConfig)
    }
    config = TrainConfig(**values).validate()
    if flags.FLAGS.dry_run:
        print(json.dumps({**config.to_dict(), "dry_run": True}, sort_keys=True))
        return
    if flags.FLAGS.check_data:
        from lcmt_tf.data.check import check_data

        report, problems = check_data(config)
        print(report)
        for problem in problems:
            print(f"{cli.program()}: problem: {problem}", file=sys.stderr)
        sys.exit(2 if problems else 0)
    try:
        from lcmt_tf.train import run

        results = run(config)
    except KeyboardInterrupt:
        print(
            f"train.py: interrupted; rerun the same command to resume from the last "
            f"completed epoch in {config.model_dir}",
            file=sys.stderr,
        )
        sys.exit(130)
    logging.info("results: %s", os.path.join(config.model_dir, "results.json"))
    if results["teacher_test_error"] is None:
        errors = "no test error: no good state to evaluate"
    else:
        errors = (
            f"teacher test error {results['teacher_test_error']:.2f}%  "
            f"student test error {results['student_test_error']:.2f}%"
        )
    print(
        f"{errors}  ({results['epochs_run']} epochs, {results['wall_time_s']:.0f} s"
        f"{', stopped: ' + results['stop_reason'] if results['stop_reason'] else ''})"
    )
    if results["stop_reason"]:
        sys.exit(1)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
