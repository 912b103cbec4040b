"""Evaluate a trained run: student and teacher test error, the teacher's per-class
accuracy, expected calibration error and confusion matrix.

    lcmt evaluate --model_dir=runs/digits [--dataset=folder:PATH] [--split=validation]

Prints the results as JSON and writes MODEL_DIR/evaluation.json and
MODEL_DIR/confusion.png. It evaluates the run's test set, or with --split=validation
the validation split the run held out (--validation_fraction).
"""

from __future__ import annotations

import json

from absl import flags

from lcmt_tf import cli


def define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "run directory (model.keras or training_state.npz)")
    flags.DEFINE_string("dataset", None, "evaluate on this data set's test split instead")
    flags.DEFINE_enum(
        "split", "test", ["test", "validation"], "test, or the run's held-out validation split"
    )


FLAGS = flags.FLAGS


def evaluate(argv: list[str]) -> None:
    cli.check_run_arguments(argv, FLAGS.model_dir, "evaluate")
    from lcmt_tf.inference import evaluate_run

    print(json.dumps(evaluate_run(FLAGS.model_dir, FLAGS.dataset, FLAGS.split), indent=2))


def main() -> None:
    cli.run(evaluate, define_flags, __doc__)


if __name__ == "__main__":
    main()
