"""Evaluate a trained run: student and teacher test error, the teacher's per-class
accuracy, expected calibration error and confusion matrix.

    lcmt evaluate --model_dir=runs/digits [--dataset=folder:PATH]

Prints the results as JSON and writes MODEL_DIR/evaluation.json and
MODEL_DIR/confusion.png. Without --dataset it evaluates on what the run evaluated on
(its test set, or its validation split).
"""

from __future__ import annotations

import json

from absl import flags

from lcmt_tf import cli


def define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "run directory (model.keras or training_state.npz)")
    flags.DEFINE_string("dataset", None, "evaluate on this data set's test split instead")


FLAGS = flags.FLAGS


def evaluate(argv: list[str]) -> None:
    cli.check_run_arguments(argv, FLAGS.model_dir, "evaluate")
    from lcmt_tf.inference import evaluate_run

    print(json.dumps(evaluate_run(FLAGS.model_dir, FLAGS.dataset), indent=2))


def main() -> None:
    cli.run(evaluate, define_flags, __doc__)


if __name__ == "__main__":
    main()
