r"""Rank a run's unlabeled images by how much labeling them should help.

    lcmt rank --model_dir=runs/mine [--by=coverage] [--images=more_images/] \
        --output=rank.csv [--top_k=50 --copy_to=to_label/]

Writes one CSV row per image, first to label first: rank, image, every score
(entropy, margin, disagreement, isolation) and the teacher's class and probability.
--by: coverage (the default: greedy k-center in the student's features, so the top K
cover the pool), isolation, entropy, margin or disagreement (lcmt_tf.curation). By
default the images are the run's own unlabeled training images; --copy_to copies the
top --top_k files there with to_label.csv. Label an image by moving its original from
unlabeled/ into train/<class>/: the next run of the same command reads the change.
"""

from __future__ import annotations

from absl import flags

from lcmt_tf import cli


def define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "run directory (model.keras or training_state.npz)")
    flags.DEFINE_string("by", "coverage", "coverage, isolation, entropy, margin or disagreement")
    flags.DEFINE_list("images", [], "rank these files or folders instead of the run's pool")
    flags.DEFINE_string("output", "rank.csv", "CSV file to write")
    flags.DEFINE_integer("top_k", 50, "with --copy_to: how many of the first images to copy")
    flags.DEFINE_string("copy_to", "", "copy the first --top_k image files into this folder")


FLAGS = flags.FLAGS


def rank(argv: list[str]) -> None:
    cli.check_run_arguments(argv, FLAGS.model_dir, "rank the images of")
    from lcmt_tf.curation import RANKINGS
    from lcmt_tf.files import atomic_write_csv, check_output_path

    if FLAGS.by not in RANKINGS:
        cli.fail(f"--by must be one of {', '.join(RANKINGS)}, not {FLAGS.by!r}")
    if FLAGS.top_k < 1:
        cli.fail("--top_k must be >= 1")
    check_output_path(FLAGS.output, "--output")
    from lcmt_tf import curation
    from lcmt_tf.inference import load_run

    trained = load_run(FLAGS.model_dir)
    candidates, labeled_features = curation.run_candidates(trained, FLAGS.images)
    rows = curation.rank(candidates, labeled_features, FLAGS.by)
    atomic_write_csv(FLAGS.output, list(rows[0]), rows)
    print(f"{len(rows)} images ranked by {FLAGS.by}: {FLAGS.output}")
    if FLAGS.copy_to:
        listing = curation.copy_for_labeling(rows, FLAGS.top_k, FLAGS.copy_to, trained.class_names)
        print(f"the first {min(FLAGS.top_k, len(rows))} copied for labeling: {listing}")


def main() -> None:
    cli.run(rank, define_flags, __doc__)


if __name__ == "__main__":
    main()
