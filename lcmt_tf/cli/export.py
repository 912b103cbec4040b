"""Export a trained run's teacher for deployment, normalization built in: uint8
images (N, H, W, C) in, class probabilities out, loadable without lcmt_tf.

    lcmt export --model_dir=runs/digits --format=savedmodel --output=OUT
    lcmt export --model_dir=runs/digits --format=onnx --output=model.onnx

savedmodel: `tf.saved_model.load(OUT).serve(images)`; onnx (needs the `export`
extra): `onnxruntime.InferenceSession(OUT)`. The class names are written beside it
(OUT/class_names.json, or OUT's stem + .class_names.json). Needs the TensorFlow
backend.
"""

from __future__ import annotations

from absl import flags

from lcmt_tf import cli


def define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "run directory (model.keras or training_state.npz)")
    flags.DEFINE_enum("format", "savedmodel", ["savedmodel", "onnx"], "what to write")
    flags.DEFINE_string("output", None, "SavedModel directory or .onnx file to write")
    flags.DEFINE_boolean(
        "overwrite",
        False,
        "replace a previous export at --output (it moves to OUTPUT.replaced-DATE-TIME; "
        "anything that is not an lcmt export is refused)",
    )


FLAGS = flags.FLAGS


def export(argv: list[str]) -> None:
    from lcmt_tf.inference import check_export_backend, export_run

    check_export_backend()  # before the run directory is read
    cli.check_run_arguments(argv, FLAGS.model_dir, "export")
    if not FLAGS.output:
        cli.fail("--output is required: the SavedModel directory or .onnx file to write")
    from lcmt_tf.exports import check_export_output

    check_export_output(FLAGS.output, FLAGS.format, FLAGS.overwrite)
    classes = export_run(FLAGS.model_dir, FLAGS.format, FLAGS.output, FLAGS.overwrite)
    print(f"exported the teacher ({FLAGS.format}) to {FLAGS.output}; class names: {classes}")


def main() -> None:
    cli.run(export, define_flags, __doc__)


if __name__ == "__main__":
    main()
