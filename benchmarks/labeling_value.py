r"""Is the labeling ranking worth following, and does the audit find planted outliers?
Measured on scikit-learn's digits written out as image folders, with `lcmt` commands.

1. Ranking against random labels. For each seed: a folder with 5 labeled images per
   class in train/, the rest of the training images in unlabeled/ and the fixed test
   split in test/; a run (`--flagfile=digits_mt`, Mean Teacher, the better method on
   digits); then K images to label chosen by `lcmt rank` (its default ranking) or at
   random (seeded), each moved from unlabeled/ into train/<its true class>/ (the
   labeler's work), and the same run again on each folder. Reported: final teacher
   test errors, and ranked - random, paired by seed, with its 95 % interval.
2. Planted outliers. A folder of classes 0-8 (5 labeled each), whose unlabeled/ also
   holds every training image of class 9 and --noise_images images of uniform noise; a
   run; `lcmt audit` at several --outlier_quantile values. Reported: precision and
   recall of the flagged images against the planted ones (class 9 and noise apart).

    python benchmarks/labeling_value.py --seeds=0-4 --output=docs/results/cpu_labeling_value.json
"""

from __future__ import annotations

import concurrent.futures
import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from absl import app, flags

flags.DEFINE_string("work_dir", "/tmp/lcmt_labeling_value", "scratch folder")
flags.DEFINE_string("output", "", "write the record as JSON here")
flags.DEFINE_string("seeds", "0-4", "seeds of part 1 (label choice and training)")
flags.DEFINE_integer("add_labels", 50, "K: images labeled after the first run")
flags.DEFINE_integer("noise_images", 50, "part 2: uniform-noise images planted")
flags.DEFINE_list("quantiles", ["0.9", "0.95", "0.99"], "part 2: --outlier_quantile values")
flags.DEFINE_list("train_args", [], "more flags for every run, e.g. --epochs=20")
flags.DEFINE_integer("parallel", 2, "runs at once")
FLAGS = flags.FLAGS


def digits_split():
    """(train images, train labels, test images, test labels): lcmt's fixed split."""
    from lcmt_tf.data import load_dataset

    data = load_dataset("digits")
    return data.x_train[..., 0], data.y_train, data.x_test[..., 0], data.y_test


def five_per_class(labels: np.ndarray, classes: int, rng) -> np.ndarray:
    """Indices of 5 images of each of the first `classes` classes: the labeled ones."""
    return np.concatenate(
        [rng.choice(np.flatnonzero(labels == label), 5, replace=False) for label in range(classes)]
    )


def write_folder(root, train, unlabeled, test):
    """Writes [(image, label)] lists as PNG files into a fresh `root` (what was there is
    removed); returns {unlabeled path: label}."""
    from PIL import Image

    if os.path.exists(root):
        shutil.rmtree(root)
    truth = {}
    for split, items in (("train", train), ("test", test), ("unlabeled", unlabeled)):
        for index, (image, label) in enumerate(items):
            folder = os.path.join(root, split, "" if split == "unlabeled" else f"digit{label}")
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"{index:05d}.png")
            Image.fromarray(image).save(path)
            if split == "unlabeled":
                truth[path] = label
    return truth


def command(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    completed = subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, env=env
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{completed.stderr[-3000:]}")
    return completed


def train(folder: str, model_dir: str, seed: int) -> dict:
    command(
        "lcmt_tf.cli.train", "--flagfile=digits_mt", f"--dataset=folder:{folder}",
        "--num_labels=all", f"--seed={seed}", f"--model_dir={model_dir}", "--verbose=0",
        "--cache_dir=none", *FLAGS.train_args,
    )  # fmt: skip
    with open(os.path.join(model_dir, "results.json")) as file:
        return json.load(file)


def labeled_copy(source: str, target: str, chosen: list[str], truth: dict) -> str:
    """A copy of folder `source` in which the `chosen` unlabeled files were labeled."""
    if os.path.exists(target):
        shutil.rmtree(target)
    shutil.copytree(source, target)
    for path in chosen:
        moved = os.path.join(target, os.path.relpath(path, source))
        destination = os.path.join(target, "train", f"digit{truth[path]}")
        shutil.move(moved, os.path.join(destination, "added_" + os.path.basename(path)))
    return target


def ranking_against_random(seed: int) -> dict:
    x_train, y_train, x_test, y_test = digits_split()
    rng = np.random.default_rng(seed)
    labeled = five_per_class(y_train, 10, rng)
    rest = np.setdiff1d(np.arange(len(y_train)), labeled)
    root = os.path.join(FLAGS.work_dir, f"seed_{seed}")
    base = os.path.join(root, "base")
    truth = write_folder(
        base,
        [(x_train[i], int(y_train[i])) for i in labeled],
        [(x_train[i], int(y_train[i])) for i in rest],
        list(zip(x_test, map(int, y_test))),
    )
    first = train(base, os.path.join(root, "run_base"), seed)
    ranking = os.path.join(root, "rank.csv")
    command("lcmt_tf.cli.rank", f"--model_dir={os.path.join(root, 'run_base')}",
            f"--output={ranking}")  # fmt: skip
    with open(ranking) as file:
        ranked = [row["image"] for row in csv.DictReader(file)][: FLAGS.add_labels]
    randomly = list(rng.choice(sorted(truth), FLAGS.add_labels, replace=False))
    results = {"seed": seed, "base_teacher_test_error": first["teacher_test_error"]}
    for arm, chosen in (("ranked", ranked), ("random", randomly)):
        folder = labeled_copy(base, os.path.join(root, arm), chosen, truth)
        outcome = train(folder, os.path.join(root, f"run_{arm}"), seed)
        results[f"{arm}_teacher_test_error"] = outcome["teacher_test_error"]
        results[f"{arm}_classes_added"] = np.bincount(
            [truth[path] for path in chosen], minlength=10
        ).tolist()
    return results


def planted_outliers() -> dict:
    x_train, y_train, x_test, y_test = digits_split()
    rng = np.random.default_rng(100)
    known = np.flatnonzero(y_train < 9)
    labeled = five_per_class(y_train, 9, rng)
    unlabeled = [(x_train[i], int(y_train[i])) for i in np.setdiff1d(known, labeled)]
    planted_class = [(x_train[i], 9) for i in np.flatnonzero(y_train == 9)]
    noise = [(rng.integers(0, 256, (8, 8), dtype=np.uint8), -1) for _ in range(FLAGS.noise_images)]
    root = os.path.join(FLAGS.work_dir, "outliers")
    folder = os.path.join(root, "data")
    truth = write_folder(
        folder,
        [(x_train[i], int(y_train[i])) for i in labeled],
        unlabeled + planted_class + noise,
        [(image, int(label)) for image, label in zip(x_test, y_test) if label < 9],
    )
    run = os.path.join(root, "run")
    results = train(folder, run, 0)
    record = {
        "unlabeled_images": len(truth),
        "planted_class_9": len(planted_class),
        "planted_noise": len(noise),
        "teacher_test_error_classes_0_8": results["teacher_test_error"],
        "audits": [],
    }
    for quantile in FLAGS.quantiles:
        command("lcmt_tf.cli.audit", f"--model_dir={run}", f"--outlier_quantile={quantile}")
        with open(os.path.join(run, "audit.json")) as file:
            flagged = {row["image"] for row in json.load(file)["out_of_class"]["flagged"]}
        entry = {"quantile": float(quantile), "flagged": len(flagged)}
        for name, label in (("class_9", 9), ("noise", -1), ("planted", None)):
            planted = {
                p
                for p, lab in truth.items()
                if (lab == label if label is not None else lab in (9, -1))
            }
            hits = len(flagged & planted)
            entry[f"{name}_recall"] = hits / len(planted)
            entry[f"{name}_precision"] = hits / len(flagged) if flagged else None
        record["audits"].append(entry)
    return record


def main(argv):
    del argv
    from lcmt_tf.experiments.runner import parse_seeds
    from lcmt_tf.experiments.statistics import mean_std, paired_difference
    from lcmt_tf.provenance import software

    os.makedirs(FLAGS.work_dir, exist_ok=True)
    seeds = parse_seeds(FLAGS.seeds)
    with concurrent.futures.ThreadPoolExecutor(FLAGS.parallel) as pool:
        outliers = pool.submit(planted_outliers)
        per_seed = list(pool.map(ranking_against_random, seeds))
        outliers = outliers.result()
    ranked = [row["ranked_teacher_test_error"] for row in per_seed]
    randomly = [row["random_teacher_test_error"] for row in per_seed]
    base = [row["base_teacher_test_error"] for row in per_seed]
    record = {
        "software": software(),
        "command": " ".join(sys.argv),
        "ranking": "lcmt rank's default (coverage)",
        "add_labels": FLAGS.add_labels,
        "per_seed": per_seed,
        "base_mean_std": mean_std(base),
        "ranked_mean_std": mean_std(ranked),
        "random_mean_std": mean_std(randomly),
        "ranked_minus_random": paired_difference(ranked, randomly),
        "planted_outliers": outliers,
    }
    print(json.dumps(record, indent=1))
    if FLAGS.output:
        with open(FLAGS.output, "w") as file:
            json.dump(record, file, indent=2)


if __name__ == "__main__":
    app.run(main)
