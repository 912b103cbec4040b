r"""Audit a run's unlabeled pool: is it the same kind of data as the labeled images?

    lcmt audit --model_dir=runs/mine [--outlier_quantile=0.99]

Writes MODEL_DIR/audit.md (to read) and audit.json: the labeled images' class mix
against the teacher's predicted mix of the unlabeled ones (a mismatch is known to
hurt semi-supervised learning), the unlabeled images likely of no labeled class
(farther in the student's features from every labeled image than the
--outlier_quantile of the labeled images' distances to their nearest other labeled
image), and training-pool images that are the same or nearly the same as a test
image (leakage).
"""

from __future__ import annotations

from absl import flags

from lcmt_tf import cli


def define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "run directory (model.keras or training_state.npz)")
    flags.DEFINE_float(
        "outlier_quantile", 0.99, "flag unlabeled images farther than this quantile (0, 1)"
    )
    flags.DEFINE_float(
        "duplicate_tolerance", 1e-3, "near-duplicate: mean squared 8x8 thumbnail difference"
    )


FLAGS = flags.FLAGS


def audit(argv: list[str]) -> None:
    cli.check_run_arguments(argv, FLAGS.model_dir, "audit")
    if not 0.0 < FLAGS.outlier_quantile < 1.0:
        cli.fail("--outlier_quantile must be in (0, 1)")
    from lcmt_tf import curation
    from lcmt_tf.inference import load_run

    trained = load_run(FLAGS.model_dir)
    report = curation.audit(trained, FLAGS.outlier_quantile, FLAGS.duplicate_tolerance)
    paths = curation.write_audit(report, FLAGS.model_dir)
    print(report["summary"])
    print(f"written: {', '.join(paths)}")


def main() -> None:
    cli.run(audit, define_flags, __doc__)


if __name__ == "__main__":
    main()
