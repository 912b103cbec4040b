"""A trained run, read back from its directory: its configuration, its data, and its
model (`model.keras`, or the last training state if the run was stopped before it
saved one), and the 128-d features the networks compute."""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np

from lcmt_tf.checkpoint import load_training_state
from lcmt_tf.config import TrainConfig
from lcmt_tf.data import ImageDataset, load_dataset
from lcmt_tf.errors import UserInputError
from lcmt_tf.mean_teacher import MeanTeacher
from lcmt_tf.run_files import INDICES_FILE, MODEL_FILE, run_weights
from lcmt_tf.train import build_model

NETWORKS = ("student", "teacher")


@dataclasses.dataclass
class TrainedRun:
    """What a run directory holds."""

    model_dir: str
    config: TrainConfig
    model: MeanTeacher
    source: str  # the file the weights came from: model.keras or training_state.npz

    def load_data(self) -> ImageDataset:
        """The run's data set, as it trained on it."""
        return load_dataset(self.config.dataset, self.config.data_dir, self.config.download)

    def labeled_indices(self) -> np.ndarray:
        with open(os.path.join(self.model_dir, INDICES_FILE)) as file:
            return np.asarray(json.load(file)["labeled_indices"], dtype=np.int64)


def load_run(model_dir: str) -> TrainedRun:
    """Reads a run directory. Raises UserInputError (one line) if it is not a run or
    holds no weights."""
    values, weights = run_weights(model_dir)
    config = TrainConfig.from_dict(values)
    if weights.endswith(MODEL_FILE):
        model = keras.models.load_model(weights)
    else:
        dataset = load_dataset(config.dataset, config.data_dir, config.download)
        model = build_model(config, dataset)
        load_training_state(model, weights)
    return TrainedRun(model_dir, config, model, os.path.basename(weights))


def features(
    model: MeanTeacher, images: np.ndarray, network: str = "student", batch_size: int = 500
) -> np.ndarray:
    """The (N, feature_dim) features g(x) of raw images through the student or the
    teacher in inference mode: the layer Local Clustering acts on."""
    if network not in NETWORKS:
        raise UserInputError(f"--network must be student or teacher, not {network!r}")
    net = getattr(model, network)
    outputs = []
    for start in range(0, len(images), batch_size):
        normalized = model.augmentation(images[start : start + batch_size], training=False)
        outputs.append(keras.ops.convert_to_numpy(net(normalized, training=False)[0]))
    return np.concatenate(outputs).astype(np.float32)
