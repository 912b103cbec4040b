r"""The teacher's confident labels for a run's unlabeled images, to review, with how
far its confidence can be trusted.

    lcmt pseudo-labels --model_dir=runs/mine --threshold=0.95 \
        --output=pseudo_labels.csv [--copy_to=review/]

Writes one CSV row per unlabeled image whose teacher probability is at least
--threshold (image, class_name, probability; and whether it is right, for a
benchmark's images, whose labels are known), MODEL_DIR/calibration.json and
reliability.png: the teacher's expected calibration error and reliability diagram on
the run's validation split (or its test set, labelled so). --copy_to copies the files
into one folder per class, to review.
"""

from __future__ import annotations

import json
import os
import shutil

from absl import flags

from lcmt_tf import cli


def define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "run directory (model.keras or training_state.npz)")
    flags.DEFINE_float("threshold", 0.95, "the least teacher probability listed")
    flags.DEFINE_list("images", [], "label these files or folders instead of the run's pool")
    flags.DEFINE_string("output", "pseudo_labels.csv", "CSV file to write")
    flags.DEFINE_string("copy_to", "", "copy the listed files into FOLDER/<class>/")


FLAGS = flags.FLAGS


def pseudo_labels(argv: list[str]) -> None:
    cli.check_run_arguments(argv, FLAGS.model_dir, "label with")
    if not 0.0 < FLAGS.threshold <= 1.0:
        cli.fail("--threshold must be in (0, 1]")
    from lcmt_tf.files import atomic_write_csv, atomic_write_json, check_output_path

    check_output_path(FLAGS.output, "--output")
    from lcmt_tf import curation
    from lcmt_tf.inference import load_run
    from lcmt_tf.plots import plot_reliability

    trained = load_run(FLAGS.model_dir)
    candidates, _ = curation.run_candidates(trained, FLAGS.images)
    rows = curation.pseudo_labels(candidates, FLAGS.threshold, trained.class_names)
    columns = ["image", "class_name", "probability"] + (
        ["correct"] if rows and "correct" in rows[0] else []
    )
    atomic_write_csv(FLAGS.output, columns, rows)
    calibration = curation.calibration(trained)
    atomic_write_json(os.path.join(FLAGS.model_dir, "calibration.json"), calibration)
    plot_reliability(calibration, os.path.join(FLAGS.model_dir, "reliability.png"))
    if FLAGS.copy_to:
        for row in rows:
            if row["image"].startswith("pool:"):
                cli.fail("--copy_to copies image files; this run's images are a benchmark's")
            folder = os.path.join(FLAGS.copy_to, row["class_name"])
            os.makedirs(folder, exist_ok=True)
            shutil.copyfile(row["image"], os.path.join(folder, os.path.basename(row["image"])))
    correct = [row["correct"] for row in rows if "correct" in row]
    accuracy = f"; {100 * sum(correct) / len(correct):.1f} % right" if correct else ""
    print(
        f"{len(rows)} of {len(candidates.names)} images at probability >= {FLAGS.threshold:g}"
        f"{accuracy}: {FLAGS.output}"
    )
    print(
        f"teacher calibration on the {calibration['measured_on']}: ECE "
        f"{calibration['expected_calibration_error']:.4f} "
        f"({json.dumps(os.path.join(FLAGS.model_dir, 'reliability.png'))})"
    )


def main() -> None:
    cli.run(pseudo_labels, define_flags, __doc__)


if __name__ == "__main__":
    main()
