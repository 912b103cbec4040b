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
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    if not FLAGS.model_dir:
        cli.fail("--model_dir is required: the run directory to evaluate")
    from lcmt_tf.run_files import run_weights

    run_weights(FLAGS.model_dir)  # a wrong directory is found before a backend starts
    from lcmt_tf.inference import evaluate_run

    print(json.dumps(evaluate_run(FLAGS.model_dir, FLAGS.dataset), indent=2))


if __name__ == "__main__":
    cli.run(main)
