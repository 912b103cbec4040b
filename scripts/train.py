"""Train Mean Teacher + Local Clustering.

    python scripts/train.py --flagfile=flags/digits.txt
    python scripts/train.py --flagfile=flags/cifar10_2000.txt --dataset=folder:../shared/data/cifar10

Every flag is a field of lcmt_tf.config.TrainConfig; see the README for the list.
Mistakes in flags, data or paths end with one line on stderr and exit status 2.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from lcmt_tf.config import TrainConfig  # noqa: E402
from lcmt_tf.errors import UserInputError  # noqa: E402

HELP = {
    "dataset": "cifar10, svhn, digits, npz:PATH or folder:PATH",
    "data_dir": "tensorflow-datasets data directory (cifar10, svhn)",
    "download": "let tensorflow-datasets download cifar10/svhn if missing",
    "num_labels": "labeled training images, divisible by the class count",
    "label_seed": "seed of the labeled split",
    "labeled_batch_size": "labeled images per step",
    "unlabeled_batch_size": "unlabeled images per step (an epoch = one pass over them)",
    "translate": "random translation, pixels (reflection padding)",
    "hflip": "random horizontal flips",
    "input_noise": "std of Gaussian noise added to normalized images",
    "model": "conv_large or digits_net",
    "width": "channel-count multiplier of the network",
    "seed": "seed of initialization, augmentation, dropout and batch order",
    "epochs": "total epochs",
    "lr": "base learning rate (SGD)",
    "lr_decay_epochs": "linear decay of the learning rate to 0 over the last N epochs",
    "momentum": "SGD momentum",
    "nesterov": "Nesterov momentum",
    "weight_decay": "decoupled weight decay (0 = none)",
    "ema_decay": "teacher EMA decay alpha",
    "consistency_weight": "lambda1 after ramp-up (0 = no consistency cost)",
    "consistency_rampup_epochs": "sigmoid ramp-up length of lambda1, epochs",
    "lc_weight": "lambda2 after ramp-up (0 = plain Mean Teacher)",
    "lc_start_epoch": "epoch at which Local Clustering starts",
    "lc_rampup_epochs": "sigmoid ramp-up length of lambda2, epochs",
    "lc_epsilon": "LC neighbourhood radius epsilon (mean squared feature distance)",
    "eval_every": "evaluate on the test set every N epochs (and at the end)",
    "model_dir": "run directory: logs, checkpoints, results; rerun to resume",
    "overwrite": "replace a run with a different configuration in --model_dir",
    "deterministic": "bit-identical runs on CPU (TensorFlow op determinism)",
    "stop_on_collapse": "stop when the feature distribution collapses",
    "jit_compile": "compile the training step with XLA",
    "steps_per_execution": "training steps per call of the compiled function; callbacks and the "
    "progress bar see every N-th step, so a GPU is not held up by Python between steps",
    "mixed_precision": "'', bfloat16 or float16 compute (weights stay float32)",
    "verbose": "0 silent, 1 progress bar, 2 one line per epoch",
}


def define_flags() -> None:
    for field in dataclasses.fields(TrainConfig):
        default, help_text = field.default, HELP[field.name]
        if isinstance(default, bool):
            flags.DEFINE_boolean(field.name, default, help_text)
        elif isinstance(default, int):
            flags.DEFINE_integer(field.name, default, help_text)
        elif isinstance(default, float):
            flags.DEFINE_float(field.name, default, help_text)
        else:
            flags.DEFINE_string(field.name, default, help_text)
    flags.DEFINE_boolean("dry_run", False, "print the resolved configuration as JSON and exit")


def fail(message: str) -> None:
    print(f"train.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        fail(str(error).splitlines()[0])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    values = {field.name: flags.FLAGS[field.name].value for field in dataclasses.fields(TrainConfig)}
    try:
        config = TrainConfig(**values).validate()
        if flags.FLAGS.dry_run:
            print(json.dumps({**config.to_dict(), "dry_run": True}, sort_keys=True))
            return
        from lcmt_tf.train import run

        results = run(config)
    except UserInputError as error:
        fail(str(error))
    except KeyboardInterrupt:
        print(
            f"train.py: interrupted; rerun the same command to resume from the last "
            f"completed epoch in {config.model_dir}",
            file=sys.stderr,
        )
        sys.exit(130)
    logging.info("results: %s", os.path.join(config.model_dir, "results.json"))
    print(
        f"teacher test error {results['teacher_test_error']:.2f}%  "
        f"student test error {results['student_test_error']:.2f}%  "
        f"({results['epochs_run']} epochs, {results['wall_time_s']:.0f} s"
        f"{', stopped: ' + results['stop_reason'] if results['stop_reason'] else ''})"
    )
    if results["stop_reason"]:
        sys.exit(1)


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)
