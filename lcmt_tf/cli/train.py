"""Train Mean Teacher + Local Clustering.

    lcmt train --flagfile=digits
    lcmt train --flagfile=cifar10_2000 --dataset=folder:../shared/data/cifar10
    python -m lcmt_tf.cli.train --flagfile=flags/digits.txt      (in a checkout)

Every flag is a field of lcmt_tf.config.TrainConfig, where its help text lives;
`--helpfull` lists them. --flagfile takes a file or an installed setting's name
(lcmt_tf.flagfiles). Mistakes in flags, data or paths end with one line on stderr and
exit status 2; a run stopped by a NaN loss or a collapse exits 1. Ctrl-C (SIGINT) and
SIGTERM (how clusters preempt) stop it after saying how to resume: exit 130 and 143.
"""

from __future__ import annotations

import os
import sys

from absl import flags, logging

from lcmt_tf import cli
from lcmt_tf.flagfiles import config_from_flags, define_config_flags


def define_flags(check_data: bool = False) -> None:
    define_config_flags(flags.FLAGS)
    flags.DEFINE_boolean("dry_run", False, "print the resolved configuration as JSON and exit")
    flags.DEFINE_boolean(
        "check_data", check_data, "print a summary of the data and its problems, and exit"
    )


def train(argv: list[str]) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    config = config_from_flags(flags.FLAGS)
    if flags.FLAGS.dry_run:
        import json

        print(json.dumps({**config.to_dict(), "dry_run": True}, sort_keys=True))
        return
    if flags.FLAGS.check_data:
        from lcmt_tf.data.check import check_data

        report, problems = check_data(config)
        print(report)
        for problem in problems:
            print(f"{cli.program()}: problem: {problem}", file=sys.stderr)
        sys.exit(2 if problems else 0)

    def stopped_message(signal_name: str) -> str:
        return (
            f"stopped by {signal_name}; rerun the same command to resume from the last "
            f"completed epoch in {config.model_dir}"
        )

    try:
        # A stop request is acted on at once, after the next step if a library swallowed
        # it, or by the watchdog if neither comes in time.
        with cli.signals_as_interrupts(stopped_message) as stop:
            import keras

            from lcmt_tf.train import run

            check = keras.callbacks.LambdaCallback(
                on_train_batch_end=lambda batch, logs: stop.check(),
                on_test_batch_end=lambda batch, logs: stop.check(),
            )
            results = run(config, callbacks=[check])
    except cli.Interrupted as stop:
        cli.stopped(stop, stopped_message(stop.signal_name))
    logging.info("results: %s", os.path.join(config.model_dir, "results.json"))
    if results.get("already_finished"):
        print(f"{config.model_dir} is a finished run; nothing was trained or changed:")
    print(summary(results))
    collapse = results.get("collapse")
    if collapse and not results["stop_reason"]:
        print(
            f"{cli.program()}: warning: the features collapsed in {collapse['epochs']} epoch(s) "
            f"from epoch {collapse['first_epoch']}"
            f"{', and at the end' if collapse['at_the_end'] else ''}: lower --lc_epsilon or "
            "--lc_weight (--stop_on_collapse stops at the first)",
            file=sys.stderr,
        )
    if results["stop_reason"]:
        sys.exit(1)


def summary(results: dict) -> str:
    """The line a finished run prints: its final errors, epochs and time."""
    errors = [
        f"{network} {split} error {results[f'{network}_{split}_error']:.2f}%"
        for split in ("validation", "test")
        for network in ("teacher", "student")
        if results.get(f"{network}_{split}_error") is not None
    ]
    if not errors:
        errors = ["no error measured: no good state to evaluate"]
    stopped = ""
    if results["stop_reason"]:
        kept = (
            f"the state after epoch {results['epochs_run']} is kept"
            if results["epochs_run"]
            else "no epoch completed before it, so no state was kept"
        )
        stopped = f", stopped: {results['stop_reason']}; {kept}"
    return (
        f"{'  '.join(errors)}  ({results['epochs_run']} epochs, "
        f"{results['wall_time_s']:.0f} s{stopped})"
    )


def main() -> None:
    cli.run(train, define_flags, __doc__)


if __name__ == "__main__":
    main()
