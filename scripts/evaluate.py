"""Evaluate a trained run: student and teacher test error, the teacher's per-class
accuracy, expected calibration error and confusion matrix.

    python scripts/evaluate.py --model_dir=runs/digits [--dataset=folder:PATH]

Prints the results as JSON and writes MODEL_DIR/evaluation.json and
MODEL_DIR/confusion.png. Without --dataset it evaluates on what the run evaluated on
(its test set, or its validation split).
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from lcmt_tf import cli  # noqa: E402

flags.DEFINE_string("model_dir", None, "run directory (model.keras or training_state.npz)")
flags.DEFINE_string("dataset", None, "evaluate on this data set's test split instead")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    cli.check_run_arguments(argv, FLAGS.model_dir, "evaluate")
    from lcmt_tf.inference import evaluate_run

    print(json.dumps(evaluate_run(FLAGS.model_dir, FLAGS.dataset), indent=2))


if __name__ == "__main__":
    cli.run(main)
