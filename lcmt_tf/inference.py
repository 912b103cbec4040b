"""A trained run, used: evaluate it, predict with it, export it.

Everything starts from a run directory: its configuration, its class names
(dataset.json) and its model (`model.keras`, or the last training state if the run
was stopped before it saved one). Predictions are the teacher's, as `MeanTeacher`'s
own `predict`; evaluation reports both networks.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import shutil
from collections.abc import Sequence

import keras
import numpy as np

from lcmt_tf.builders import build_model
from lcmt_tf.config import TrainConfig
from lcmt_tf.data import ImageDataset, load_dataset
from lcmt_tf.data.folders import DEFAULT_MAX_IMAGE_PIXELS, image_inputs, read_image
from lcmt_tf.data.training_data import load_run_dataset
from lcmt_tf.errors import MissingExtraError, UserInputError
from lcmt_tf.exports import check_export_output, move_export_aside
from lcmt_tf.files import atomic_write_json
from lcmt_tf.mean_teacher import MeanTeacher
from lcmt_tf.plots import plot_confusion
from lcmt_tf.provenance import software
from lcmt_tf.run_dir.checkpoint import load_training_state
from lcmt_tf.run_dir.layout import (
    DATASET_FILE,
    INDICES_FILE,
    MODEL_FILE,
    STATE_FILE,
    run_weights,
)
from lcmt_tf.run_dir.lifecycle import write_run_model_card
from lcmt_tf.semi_supervised import NETWORKS

EXPORT_FORMATS = ("savedmodel", "onnx")
CALIBRATION_BINS = 15
BATCH_SIZE = 500


@dataclasses.dataclass
class TrainedRun:
    """What a run directory holds."""

    model_dir: str
    config: TrainConfig
    model: MeanTeacher
    source: str  # the file the weights came from: model.keras or training_state.npz

    def load_data(self) -> ImageDataset:
        """The run's data set, as it trained on it (its validation split included)."""
        return load_run_dataset(self.config)

    def labeled_indices(self) -> np.ndarray:
        path = os.path.join(self.model_dir, INDICES_FILE)
        try:
            with open(path) as file:
                return np.asarray(json.load(file)["labeled_indices"], dtype=np.int64)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UserInputError(
                f"cannot read {path} ({error}); rerun the training command on this run "
                "directory to write it again"
            ) from None

    @functools.cached_property
    def dataset_info(self) -> dict:
        """dataset.json: class names, image shape, evaluation set (runs written before
        it existed: read from the data)."""
        path = os.path.join(self.model_dir, DATASET_FILE)
        if os.path.isfile(path):
            try:
                with open(path) as file:
                    info = json.load(file)
                missing = {"class_names", "image_shape"} - set(info)
                if missing:
                    raise KeyError(", ".join(sorted(missing)))
                return info
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise UserInputError(
                    f"cannot read {path} ({error}); delete it to read the class names from "
                    "the data, or rerun the training command to write it again"
                ) from None
        data = self.load_data()
        return {"class_names": list(data.class_names), "image_shape": list(data.image_shape)}

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset_info["class_names"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.dataset_info["image_shape"])


def load_run(model_dir: str) -> TrainedRun:
    """Reads a run directory. Raises UserInputError (one line) if it is not a run or
    holds no weights."""
    values, weights = run_weights(model_dir)
    config = TrainConfig.from_dict(values)
    if weights.endswith(MODEL_FILE):
        state = os.path.join(model_dir, STATE_FILE)
        instead = (
            f"move it out of the run directory to use {STATE_FILE} (the state after the last "
            "epoch) instead"
            if os.path.exists(state)
            else "restore it from a copy (the run has no training state to use instead)"
        )
        problem = _archive_problem(weights)
        if problem:
            raise UserInputError(f"{weights} is damaged ({problem}): {instead}")
        try:
            model = keras.models.load_model(weights)
        except Exception as error:  # Keras raises many kinds for a damaged archive
            raise UserInputError(
                f"cannot load {weights} ({type(error).__name__}: {str(error)[:120]}); it is "
                f"damaged: {instead}"
            ) from None
    else:
        dataset = load_run_dataset(config)
        model = build_model(config, dataset)
        load_training_state(model, weights)
    return TrainedRun(model_dir, config, model, os.path.basename(weights))


def _archive_problem(path: str) -> str | None:
    """Why the .keras file `path` is not a readable zip archive, or None."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile) as error:
        return f"not a readable .keras archive: {error}"
    return f"its member {bad} is corrupt" if bad else None


def features(
    model: MeanTeacher, images: np.ndarray, network: str = "student", batch_size: int = BATCH_SIZE
) -> np.ndarray:
    """The (N, feature_dim) features g(x) of raw images through the student or the
    teacher in inference mode: the layer Local Clustering acts on."""
    return _outputs(model, images, network, batch_size)[0]


def probabilities(
    model: MeanTeacher, images: np.ndarray, network: str = "teacher", batch_size: int = BATCH_SIZE
) -> np.ndarray:
    """(N, classes) softmax probabilities of raw uint8 images, in inference mode."""
    return features_and_probabilities(model, images, network, batch_size)[1]


def features_and_probabilities(
    model: MeanTeacher, images, network: str = "student", batch_size: int = BATCH_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """(features, softmax probabilities) of raw images through one network in one pass;
    `images` is anything that slices into batches of images (an array, an ImagePool
    view), read a batch at a time."""
    features, logits = _outputs(model, images, network, batch_size)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return features, shifted / shifted.sum(axis=1, keepdims=True)


def _outputs(model, images, network, batch_size):
    if network not in NETWORKS:
        raise UserInputError(f"--network must be student or teacher, not {network!r}")
    net = getattr(model, network)
    outputs = [], []
    for start in range(0, len(images), batch_size):
        normalized = model.augmentation(images[start : start + batch_size], training=False)
        for output, value in zip(outputs, net(normalized, training=False)):
            output.append(keras.ops.convert_to_numpy(value).astype(np.float32))
    return [np.concatenate(output) for output in outputs]


# Evaluation


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: over `bins` equal-width bins of the top probability (confidence), the
    share-weighted mean |accuracy − mean confidence| (Guo et al. 2017), in [0, 1]."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """(true class, predicted class) counts."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def evaluate_run(model_dir: str, dataset: str | None = None, split: str = "test") -> dict:
    """Student and teacher error (%) on `split` ("test", or "validation": the split the
    run held out with --validation_fraction), the teacher's per-class accuracy (%),
    expected calibration error and confusion matrix; or on the test split of
    `dataset` (same image shape and classes). Writes MODEL_DIR/evaluation.json and
    MODEL_DIR/confusion.png (a read-only run directory: nothing, with a warning);
    returns the dict."""
    trained = load_run(model_dir)
    if dataset:
        data = load_dataset(dataset, image_size=trained.config.image_size_pair())
        if data.image_shape != trained.image_shape or data.num_classes != len(trained.class_names):
            raise UserInputError(
                f"--dataset={dataset} has {data.num_classes} classes of {data.image_shape} "
                f"images; the run was trained on {len(trained.class_names)} classes of "
                f"{trained.image_shape}"
            )
        evaluated_on = f"{dataset}: {split} split"
    else:
        data = trained.load_data()
        evaluated_on = f"the run's {split} split" if split == "validation" else "test set"
    images, labels = data.split(split)
    if not len(labels):
        other = "validation" if split == "test" else "test"
        hint = f"; --split={other} evaluates its {other} split" if len(data.split(other)[1]) else ""
        raise UserInputError(f"{data.name} has no {split} images to evaluate on{hint}")
    names = trained.class_names
    result = {"model_dir": model_dir, "weights": trained.source, "evaluated_on": evaluated_on}
    result["num_images"] = int(len(labels))
    for network in NETWORKS:
        probs = probabilities(trained.model, images, network)
        predicted = probs.argmax(axis=1)
        result[f"{network}_{split}_error"] = float(100.0 * np.mean(predicted != labels))
        result[f"{network}_expected_calibration_error"] = expected_calibration_error(
            probs, labels, CALIBRATION_BINS
        )
        if network == "teacher":
            matrix = confusion_matrix(labels, predicted, len(names))
    totals = matrix.sum(axis=1)
    result["teacher_per_class_accuracy"] = {
        name: (float(100.0 * matrix[i, i] / totals[i]) if totals[i] else None)
        for i, name in enumerate(names)
    }
    result["class_names"] = names
    result["teacher_confusion_matrix"] = matrix.tolist()
    result["software"] = software()
    if not os.access(model_dir, os.W_OK):
        logging.warning(
            "%s is read-only: evaluation.json and confusion.png were not written (the "
            "figures are printed)",
            model_dir,
        )
        return result
    atomic_write_json(os.path.join(model_dir, "evaluation.json"), result)
    try:
        plot_confusion(matrix, names, os.path.join(model_dir, "confusion.png"))
    except MissingExtraError as error:  # the numbers are in evaluation.json
        logging.warning("confusion.png not drawn: %s", error)
    return result


def predict_files(
    model_dir: str,
    inputs: Sequence[str],
    top_k: int = 1,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> tuple[list[dict], list[str]]:
    """The teacher's top_k classes and probabilities for each image file (resized to
    the run's image size, converted to its channels). Returns (rows, problems): a
    file that cannot be read is a problem line, and the others are still predicted."""
    files = image_inputs(inputs)
    trained = load_run(model_dir)
    names, (height, width, channels) = trained.class_names, trained.image_shape
    if not 1 <= top_k <= len(names):
        raise UserInputError(f"--top_k must be between 1 and the {len(names)} classes")
    mode = "L" if channels == 1 else "RGB"
    images, kept, problems = [], [], []
    for path in files:
        try:
            images.append(read_image(path, mode, (height, width), max_pixels))
            kept.append(path)
        except UserInputError as error:
            problems.append(str(error))
    rows = []
    if images:
        probs = probabilities(trained.model, np.stack(images), "teacher")
        order = np.argsort(-probs, axis=1)[:, :top_k]
        for path, ranks, row_probs in zip(kept, order, probs):
            row = {"path": path}
            for rank, index in enumerate(ranks, start=1):
                suffix = "" if rank == 1 else f"_{rank}"
                row[f"class_name{suffix}"] = names[index]
                row[f"probability{suffix}"] = float(row_probs[index])
            rows.append(row)
    return rows, problems


# Export


def inference_model(trained: TrainedRun) -> keras.Model:
    """uint8 images (N, H, W, C) -> the teacher's class probabilities, normalization
    built in (`MeanTeacher.inference_model`): a plain Keras model, independent of
    lcmt_tf once exported."""
    return trained.model.inference_model(
        "teacher", "probabilities", image_shape=trained.image_shape
    )


def check_export_backend() -> None:
    """Export writes through TensorFlow (SavedModel; ONNX by tf2onnx): refused on the
    other backends, before anything is read."""
    if keras.backend.backend() != "tensorflow":
        raise UserInputError(
            "export needs the TensorFlow backend: run it with KERAS_BACKEND=tensorflow"
        )


def export_run(model_dir: str, export_format: str, output: str, overwrite: bool = False) -> str:
    """Writes the teacher as a TensorFlow SavedModel (a `serve` function) or an ONNX
    file at `output`; both take uint8 images and return class probabilities. An
    existing `output` is refused; with `overwrite`, a previous export there (one with
    this function's provenance file) is moved aside once the new export has been
    written beside it, and anything else is still refused. Returns the path of the
    class names file written beside it."""
    if export_format not in EXPORT_FORMATS:
        raise UserInputError(f"--format must be savedmodel or onnx, not {export_format!r}")
    check_export_backend()
    if export_format == "onnx":
        try:
            import onnx  # noqa: F401
            import tf2onnx  # noqa: F401
        except ImportError:
            raise UserInputError(
                "ONNX export needs tf2onnx and onnx: pip install 'lcmt_tf[export]'"
            ) from None
    check_export_output(output, export_format, overwrite)
    trained = load_run(model_dir)
    exported = inference_model(trained)
    exported(np.zeros((1, *trained.image_shape), np.uint8))  # the ONNX exporter needs a call
    keras_format = "tf_saved_model" if export_format == "savedmodel" else "onnx"
    # Written beside the target first, so that a failed export leaves the old one.
    base, extension = os.path.splitext(output.rstrip(os.sep))
    temporary = f"{base}.exporting{extension}"
    if os.path.isdir(temporary):  # left by an export that was killed
        shutil.rmtree(temporary)
    exported.export(temporary, format=keras_format, verbose=False)
    check_export_output(output, export_format, overwrite)  # nothing else appeared meanwhile
    move_export_aside(output, export_format)
    os.replace(temporary, output)
    classes_path = (
        os.path.join(output, "class_names.json")
        if export_format == "savedmodel"
        else f"{os.path.splitext(output)[0]}.class_names.json"
    )
    with open(classes_path, "w") as file:
        json.dump(trained.class_names, file)
    provenance = {
        "exported_from": os.path.abspath(model_dir),
        "weights": trained.source,
        "format": export_format,
        "class_names": list(trained.class_names),
        "software": software(),
    }
    atomic_write_json(classes_path.replace("class_names.json", "provenance.json"), provenance)
    write_run_model_card(model_dir, classes_path.replace("class_names.json", "README.md"))
    return classes_path
