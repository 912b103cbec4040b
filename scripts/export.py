"""Export a trained run's teacher for deployment, normalization built in: uint8
images (N, H, W, C) in, class probabilities out, loadable without lcmt_tf.

    python scripts/export.py --model_dir=runs/digits --format=savedmodel --output=OUT
    python scripts/export.py --model_dir=runs/digits --format=onnx --output=model.onnx

savedmodel: `tf.saved_model.load(OUT).serve(images)`; onnx (needs the `export`
extra): `onnxruntime.InferenceSession(OUT)`. The class names are written beside it
(OUT/class_names.json, or OUT's stem + .class_names.json). Needs the TensorFlow
backend.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from lcmt_tf import cli  # noqa: E402

flags.DEFINE_string("model_dir", None, "run directory (model.keras or training_state.npz)")
flags.DEFINE_enum("format", "savedmodel", ["savedmodel", "onnx"], "what to write")
flags.DEFINE_string("output", None, "SavedModel directory or .onnx file to write")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    if not FLAGS.model_dir or not FLAGS.output:
        cli.fail("--model_dir and --output are required")
    from lcmt_tf.run_files import run_weights

    run_weights(FLAGS.model_dir)
    from lcmt_tf.inference import export_run

    classes = export_run(FLAGS.model_dir, FLAGS.format, FLAGS.output)
    print(f"exported the teacher ({FLAGS.format}) to {FLAGS.output}; class names: {classes}")


if __name__ == "__main__":
    cli.run(main)
