r"""Predict classes of new images with a trained run's teacher.

    lcmt predict --model_dir=runs/digits --images=FOLDER_OR_FILES \
        --output=predictions.csv [--top_k=3]

Writes one CSV row per image: path, class_name, probability (and class_name_2,
probability_2, ... with --top_k), with the class names stored at training time.
Images are resized to the run's image size. A file that cannot be read is reported
on stderr and the others are predicted.
"""

from __future__ import annotations

import sys

from absl import flags

from lcmt_tf import cli


def define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "run directory (model.keras or training_state.npz)")
    flags.DEFINE_list("images", [], "image files and/or folders (searched recursively)")
    flags.DEFINE_string("output", "predictions.csv", "CSV file to write")
    flags.DEFINE_integer("top_k", 1, "classes per image, most probable first")
    flags.DEFINE_integer(
        "max_image_pixels",
        89_478_485,
        "skip an image with more pixels than this, before decoding it (PIL's limit)",
    )


FLAGS = flags.FLAGS


def predict(argv: list[str]) -> None:
    cli.check_run_arguments(argv, FLAGS.model_dir, "predict with")
    if not FLAGS.images:
        cli.fail("--images is required: image files or folders, comma-separated")
    from lcmt_tf.data.folders import image_inputs
    from lcmt_tf.files import atomic_write_csv, check_output_path

    image_inputs(FLAGS.images)  # before a backend starts
    check_output_path(FLAGS.output, "--output")
    from lcmt_tf.inference import predict_files

    rows, problems = predict_files(
        FLAGS.model_dir, FLAGS.images, FLAGS.top_k, FLAGS.max_image_pixels
    )
    for problem in problems:
        print(f"{cli.program()}: skipped: {problem}", file=sys.stderr)
    columns = ["path"] + [
        f"{name}{'' if rank == 1 else f'_{rank}'}"
        for rank in range(1, FLAGS.top_k + 1)
        for name in ("class_name", "probability")
    ]
    atomic_write_csv(FLAGS.output, columns, rows)
    print(f"{len(rows)} images predicted, {len(problems)} skipped: {FLAGS.output}")


def main() -> None:
    cli.run(predict, define_flags, __doc__)


if __name__ == "__main__":
    main()
