"""A practitioner's run end to end: a folder of labeled, unlabeled and test images
trained with --num_labels=all, then evaluate, predict and export on the result, each
checked against an independent computation (NumPy on the model's own outputs, a
fresh Python process without lcmt_tf for the exported files)."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lcmt_tf.inference import confusion_matrix, expected_calibration_error

from conftest import ROOT, error_lines

pytestmark = pytest.mark.tensorflow_only  # the command line, SavedModel and ONNX


def script(name, *args):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", f"{name}.py"), *args],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_run_trained_on_every_labeled_image_and_the_unlabeled_folder(folder_run):
    run = folder_run / "run"
    results = json.load(open(run / "results.json"))
    assert (results["num_labeled"], results["num_unlabeled"]) == (50, 300)
    dataset = json.load(open(run / "dataset.json"))
    assert dataset["class_names"] == [f"digit{label}" for label in range(10)]
    assert dataset["image_shape"] == [8, 8, 1] and dataset["num_test"] == 100


def test_evaluate_reports_errors_per_class_accuracy_calibration_and_confusion(folder_run):
    run = folder_run / "run"
    completed = script("evaluate", f"--model_dir={run}")
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(completed.stdout)
    assert report == json.load(open(run / "evaluation.json"))
    results = json.load(open(run / "results.json"))
    assert report["software"]["lcmt_tf"] == results["software"]["lcmt_tf"]
    # The same test error as training's own evaluation (model.evaluate's accuracies).
    for network in ("teacher", "student"):
        assert report[f"{network}_test_error"] == pytest.approx(results[f"{network}_test_error"])
    matrix = np.array(report["teacher_confusion_matrix"])
    assert matrix.sum() == 100 == report["num_images"]
    assert 100 - 100 * np.trace(matrix) / 100 == pytest.approx(report["teacher_test_error"])
    for index, name in enumerate(report["class_names"]):
        accuracy = report["teacher_per_class_accuracy"][name]
        assert accuracy == pytest.approx(100 * matrix[index, index] / matrix[index].sum())
    assert 0 <= report["teacher_expected_calibration_error"] <= 1
    assert (run / "confusion.png").stat().st_size > 5_000


def test_expected_calibration_error_of_a_hand_computed_example():
    # Two bins, [0, 0.5] and (0.5, 1]. Confidences 0.9 (right) and 0.8 (wrong) fall in
    # the second (accuracy 0.5, mean confidence 0.85), 0.4 (right) in the first
    # (accuracy 1, confidence 0.4): ECE = 2/3 * 0.35 + 1/3 * 0.6.
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.4, 0.3, 0.3]])
    labels = np.array([0, 0, 0])
    expected = 2 / 3 * abs(0.5 - 0.85) + 1 / 3 * abs(1.0 - 0.4)
    assert expected_calibration_error(probs, labels, bins=2) == pytest.approx(expected)
    assert confusion_matrix(labels, probs.argmax(1), 3).tolist() == [
        [2, 1, 0],
        [0, 0, 0],
        [0, 0, 0],
    ]


def test_predict_writes_top_k_with_class_names_and_reports_an_unreadable_image(
    folder_run, tmp_path
):
    images = sorted((folder_run / "data" / "test" / "digit3").glob("*.png"))[:4]
    (tmp_path / "broken.png").write_bytes(b"not a png")
    inputs = ",".join(map(str, [*images, tmp_path / "broken.png"]))
    output = tmp_path / "predictions.csv"
    completed = script("predict", f"--model_dir={folder_run / 'run'}", f"--images={inputs}",
                       f"--output={output}", "--top_k=3")  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "skipped: cannot read image" in completed.stderr and "broken.png" in completed.stderr
    rows = list(csv.DictReader(open(output)))
    assert [row["path"] for row in rows] == list(map(str, images))
    reference = exported_probabilities(folder_run, images)  # an independent path
    for row, probs in zip(rows, reference):
        top = np.argsort(-probs)[:3]
        assert [row["class_name"], row["class_name_2"], row["class_name_3"]] == [
            f"digit{index}" for index in top
        ]
        assert float(row["probability"]) == pytest.approx(probs[top[0]], abs=1e-5)
        assert float(row["probability"]) >= float(row["probability_2"])


FRESH_PROCESS = """
import json, sys
import numpy as np
from PIL import Image
paths = json.loads(sys.argv[2])
images = np.stack([np.asarray(Image.open(p))[..., None] for p in paths]).astype(np.uint8)
if sys.argv[1] == "savedmodel":
    import tensorflow as tf
    model = tf.saved_model.load(sys.argv[3])
    probs = model.serve(images).numpy()
else:
    import onnxruntime
    session = onnxruntime.InferenceSession(sys.argv[3])
    probs = session.run(None, {session.get_inputs()[0].name: images})[0]
assert "lcmt_tf" not in sys.modules
print(json.dumps(probs.tolist()))
"""


def run_exported(kind, path, images):
    completed = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, kind, json.dumps(list(map(str, images))), path],
        cwd="/",
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return np.array(json.loads(completed.stdout.strip().splitlines()[-1]))


def exported_probabilities(folder_run, images):
    export = folder_run / "exported"
    if not export.exists():
        completed = script("export", f"--model_dir={folder_run / 'run'}", "--format=savedmodel",
                           f"--output={export}")  # fmt: skip
        assert completed.returncode == 0, completed.stderr[-2000:]
    provenance = json.loads((export / "provenance.json").read_text())
    assert provenance["software"]["backend"] == "tensorflow"
    assert provenance["exported_from"] == str((folder_run / "run").resolve())
    return run_exported("savedmodel", str(export), images)


@pytest.mark.parametrize("kind", ["savedmodel", pytest.param("onnx", marks=pytest.mark.slow)])
def test_exported_teacher_loads_without_lcmt_tf_and_matches_predict(kind, folder_run, tmp_path):
    import keras

    output = tmp_path / ("model.onnx" if kind == "onnx" else "saved")
    completed = script("export", f"--model_dir={folder_run / 'run'}", f"--format={kind}",
                       f"--output={output}")  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    images = sorted((folder_run / "data" / "test").glob("*/*.png"))[:16]
    probs = run_exported(kind, str(output), images)
    model = keras.models.load_model(folder_run / "run" / "model.keras")
    data = np.stack([load_dataset_image(path) for path in images])
    logits = keras.ops.convert_to_numpy(model.predict(data, verbose=0))  # the teacher's
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.abs(probs - expected).max() <= 1e-4


def load_dataset_image(path):
    from PIL import Image

    return np.asarray(Image.open(path))[..., None]


@pytest.mark.parametrize(
    "command, args, message",
    [
        ("evaluate", ["--model_dir={tmp}/nowhere"], "does not exist"),
        ("evaluate", ["--model_dir={tmp}/no_model"], "holds no model"),
        ("predict", ["--model_dir={run}", "--images={tmp}/empty"], "no image files found"),
        ("export", ["--model_dir={tmp}/not_a_run", "--output={tmp}/o"], "not a run directory"),
        ("export", ["--model_dir={run}", "--format=tflite", "--output=x"], "--format"),
    ],
)
def test_inference_mistakes_are_one_line_and_exit_2(command, args, message, folder_run, tmp_path):
    (tmp_path / "no_model").mkdir()
    (tmp_path / "no_model" / "config.json").write_text(
        (folder_run / "run" / "config.json").read_text()
    )
    (tmp_path / "empty").mkdir()
    (tmp_path / "not_a_run").mkdir()
    args = [arg.format(tmp=tmp_path, run=folder_run / "run") for arg in args]
    completed = script(command, *args)
    assert completed.returncode == 2, completed.stderr[-2000:]
    lines = error_lines(completed.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"{command}.py: error: "), lines
    assert message in lines[0]


def test_a_run_stopped_before_it_saved_a_model_is_evaluated_from_its_training_state(
    folder_run, tmp_path
):
    import shutil

    stopped = tmp_path / "stopped"
    shutil.copytree(folder_run / "run", stopped, ignore=shutil.ignore_patterns("model.keras"))
    completed = script("evaluate", f"--model_dir={stopped}")
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(completed.stdout)
    assert report["weights"] == "training_state.npz"
    results = json.load(open(folder_run / "run" / "results.json"))
    assert report["teacher_test_error"] == pytest.approx(results["teacher_test_error"])
