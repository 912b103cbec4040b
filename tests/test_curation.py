"""After training (lcmt_tf.curation): rankings, pseudo-labels, calibration and the
audit, against hand-counted cases; and the commands on a trained folder run."""

import csv
import json
import os

import numpy as np
import pytest

from lcmt_tf import curation
from lcmt_tf.errors import UserInputError

from conftest import ROOT


def candidates(teacher, student=None, features=None):
    teacher = np.asarray(teacher, float)
    features = np.zeros((len(teacher), 1)) if features is None else np.asarray(features, float)
    return curation.Candidates(
        [f"pool:{i}" for i in range(len(teacher))],
        teacher, teacher if student is None else np.asarray(student, float), features,
    )  # fmt: skip


def test_coverage_takes_the_farthest_point_from_everything_covered():
    points = np.array([[1.0], [2.0], [10.0], [10.5]])
    labeled = np.array([[0.0]])
    # 10.5 first (farthest from 0); then 2 (4 from 0, 72.25 from 10.5), then 1, and 10
    # last (0.25 from 10.5).
    assert curation.coverage_order(points, labeled, 4) == [3, 1, 0, 2]
    assert curation.coverage_order(points, labeled, 2) == [3, 1]


def test_scores_are_their_definitions():
    teacher = [[0.5, 0.5, 0.0], [0.9, 0.05, 0.05]]
    student = [[1.0, 0.0, 0.0], [0.9, 0.05, 0.05]]
    values = curation.scores(candidates(teacher, student, [[0.0], [3.0]]), np.array([[1.0]]))
    assert values["entropy"] == pytest.approx(
        [np.log(2), -(0.9 * np.log(0.9) + 0.1 * np.log(0.05))]
    )
    assert values["margin"] == pytest.approx([1.0, 0.15])
    assert values["disagreement"] == pytest.approx([0.5, 0.0])
    assert values["isolation"] == pytest.approx([1.0, 4.0])
    rows = curation.rank(candidates(teacher, student, [[0.0], [3.0]]), np.array([[1.0]]), "margin")
    assert [row["image"] for row in rows] == ["pool:0", "pool:1"] and rows[0]["rank"] == 1
    with pytest.raises(UserInputError, match="--by must be one of coverage"):
        curation.rank(candidates(teacher), np.array([[1.0]]), "random")


def test_pseudo_labels_keep_the_confident_ones_most_confident_first():
    pool = candidates([[0.97, 0.03], [0.6, 0.4], [0.01, 0.99]])
    pool.true_labels = np.array([0, 0, 0])
    rows = curation.pseudo_labels(pool, 0.95, ["a", "b"])
    assert [(row["image"], row["class_name"], row["correct"]) for row in rows] == [
        ("pool:2", "b", 0), ("pool:0", "a", 1),
    ]  # fmt: skip


def test_class_mix_is_the_total_variation_of_the_shares():
    pool = candidates([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])  # predicted 0, 0, 1, 0
    mix = curation.class_mix(pool, np.array([0, 1]), 2)
    assert mix["unlabeled_predicted_shares"] == [0.75, 0.25]
    assert mix["total_variation"] == pytest.approx(0.25)


def test_planted_outliers_are_flagged_and_the_rest_are_not():
    rng = np.random.default_rng(0)
    labeled = rng.normal(size=(200, 4))
    unlabeled = np.concatenate([rng.normal(size=(60, 4)), rng.normal(size=(5, 4)) + 20.0])
    pool = candidates(np.full((65, 2), 0.5), features=unlabeled)
    flagged = curation.out_of_class(pool, labeled, quantile=0.99)["flagged_indices"]
    assert sorted(flagged) == [60, 61, 62, 63, 64]


def test_near_duplicates_of_test_images_are_found():
    rng = np.random.default_rng(1)
    test = rng.integers(0, 256, (5, 16, 16, 1), dtype=np.uint8)
    pool = rng.integers(0, 256, (6, 16, 16, 1), dtype=np.uint8)
    pool[1] = test[3]  # the same image
    pool[4] = np.clip(test[0].astype(int) + 1, 0, 255).astype(np.uint8)  # nearly the same
    found = curation.near_duplicates(pool, [f"p{i}" for i in range(6)], test)
    assert [(row["image"], row["test_index"], row["identical"]) for row in found] == [
        ("p1", 3, True), ("p4", 0, False),
    ]  # fmt: skip


def command(name, *args):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", f"{name}.py"), *args], cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


@pytest.mark.tensorflow_only  # the commands, once
def test_rank_pseudo_labels_and_audit_on_a_trained_folder_run(folder_run):
    run, to_label = folder_run / "run", folder_run / "to_label"
    ranked = command("rank", f"--model_dir={run}", f"--output={folder_run / 'rank.csv'}",
                     "--top_k=5", f"--copy_to={to_label}")  # fmt: skip
    assert ranked.returncode == 0, ranked.stderr[-2000:]
    rows = list(csv.DictReader(open(folder_run / "rank.csv")))
    assert len(rows) == 300 and [int(row["rank"]) for row in rows] == list(range(1, 301))
    assert all(row["image"].startswith(str(folder_run / "data" / "unlabeled")) for row in rows)
    listing = list(csv.DictReader(open(to_label / "to_label.csv")))
    assert [row["original"] for row in listing] == [row["image"] for row in rows[:5]]
    assert all(os.path.isfile(row["copy"]) for row in listing)

    labels = command("pseudo_labels", f"--model_dir={run}", "--threshold=0.5",
                     f"--output={folder_run / 'pseudo.csv'}")  # fmt: skip
    assert labels.returncode == 0, labels.stderr[-2000:]
    calibration = json.load(open(run / "calibration.json"))
    assert calibration["measured_on"] == "test set" and calibration["images"] == 100
    assert sum(b["count"] for b in calibration["bins"]) == 100
    assert (run / "reliability.png").stat().st_size > 5000

    audit = command("audit", f"--model_dir={run}")
    assert audit.returncode == 0, audit.stderr[-2000:]
    report = json.load(open(run / "audit.json"))
    assert report["unlabeled_images"] == 300
    assert sum(report["class_mix"]["unlabeled_predicted_shares"]) == pytest.approx(1.0)
    assert report["near_duplicates_of_test_images"] == []  # the folder has none
    assert "## Class mix" in (run / "audit.md").read_text()

    refused = command("rank", f"--model_dir={run}", "--by=random")
    assert refused.returncode == 2 and "--by must be one of coverage" in refused.stderr
