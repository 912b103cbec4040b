"""Data-parallel training (lcmt_tf.distribute) against one device: on 2 logical CPU
devices, one training step on the same global batch gives the same loss, LC value and
student and teacher weights (batch-norm statistics included) as the single-device step
(augmentation and dropout off; on TensorFlow with synchronized batch norm,
--sync_batchnorm, as its statistics are otherwise per replica). Each check runs in a
subprocess (on the suite's backend): the host CPU must be split before the backend
starts."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import ROOT, error_lines, train

# What both subprocess scripts start with: the backend from argv, and a data set of one
# batch for fit.
PRELUDE = """
import json, os, sys
os.environ["KERAS_BACKEND"] = sys.argv[1]
import keras
import numpy as np
from lcmt_tf.config import TrainConfig
from lcmt_tf.distribute import set_batch_norm_synchronized, start_distribution
from lcmt_tf import Augmentation, ConsistencyRampup, LocalClusteringSchedule, MeanTeacher
from lcmt_tf.models import from_backbone

class Batches(keras.utils.PyDataset):
    def __init__(self, batch):
        super().__init__()
        self.batch = batch
    def __len__(self):
        return 1
    def __getitem__(self, index):
        return self.batch
"""


def run_script(code: str, backend: str) -> dict:
    """PRELUDE + `code` in a subprocess on `backend` (the host CPU must be split before
    the backend starts); the JSON its last line prints."""
    completed = subprocess.run(
        [sys.executable, "-c", PRELUDE + code, backend],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


ONE_STEP = """
rng = np.random.default_rng(0)
batch = {
    "labeled_images": rng.integers(0, 256, (8, 8, 8, 1), dtype="uint8"),
    "labels": rng.integers(0, 10, 8).astype("int32"),
    "unlabeled_images": rng.integers(0, 256, (16, 8, 8, 1), dtype="uint8"),
}
results = {}
for mode in ("none", "mirrored"):
    distribution = start_distribution(TrainConfig(distribute=mode, num_cpu_devices=2))
    with distribution.scope():
        replicas = distribution.replicas
        keras.utils.set_random_seed(0)
        backbone = keras.Sequential([keras.layers.Conv2D(8, 3, padding="same"),
                                     keras.layers.BatchNormalization(),
                                     keras.layers.ReLU()])
        student = from_backbone(backbone, 10, feature_dim=16, input_shape=(8, 8, 1))
        if keras.backend.backend() == "tensorflow":
            assert set_batch_norm_synchronized(student, True) == 1
        model = MeanTeacher(student, Augmentation([0.5], [0.25], max_translation=0),
                            ema_decay=0.9, lc_epsilon=0.002)
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        weights = [ConsistencyRampup(3.0, 0), LocalClusteringSchedule(2.0, 0, 0)]
        history = model.fit(Batches(batch), epochs=1, verbose=0, shuffle=False,
                            callbacks=weights).history
        results[mode] = {
            "replicas": replicas,
            "logs": {key: float(values[0]) for key, values in history.items()},
            "student": [np.asarray(w).tolist() for w in model.student.get_weights()],
            "teacher": [np.asarray(w).tolist() for w in model.teacher.get_weights()],
        }
print(json.dumps(results))
"""


def test_a_data_parallel_step_equals_the_single_device_step():
    results = run_script(ONE_STEP, keras.backend.backend())  # on the suite's backend
    single, parallel = results["none"], results["mirrored"]
    assert (single["replicas"], parallel["replicas"]) == (1, 2)
    for key in ("loss", "ce", "consistency", "lc", "lc_neighbor_fraction"):
        assert parallel["logs"][key] == pytest.approx(single["logs"][key], rel=1e-5, abs=1e-6), key
    # Some pairs are neighbors and some not, so LC's mask is exercised across replicas.
    assert 0 < single["logs"]["lc_neighbor_fraction"] < 1 and single["logs"]["lc"] > 0
    for network in ("student", "teacher"):
        for mine, theirs in zip(parallel[network], single[network]):
            np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5)


# The mirrored command line training digits on 2 CPU devices (and resuming after a
# kill) is tests/test_multi_worker.py's mirrored case.
@pytest.mark.tensorflow_only
def test_a_batch_that_does_not_split_across_the_devices_is_one_line(tmp_path):
    refused = train("--flagfile=flags/digits.txt", "--distribute=mirrored",
                    "--num_cpu_devices=3", "--epochs=1", "--lr_decay_epochs=0", "--lc_weight=0",
                    f"--model_dir={tmp_path / 'odd'}")  # fmt: skip
    assert refused.returncode == 2
    assert error_lines(refused.stderr)[-1] == (
        "train.py: error: --labeled_batch_size=32 does not split evenly across 3 replicas; "
        "use a multiple of 3"
    )
    assert not (tmp_path / "odd").exists()


PER_REPLICA_DRAWS = """
import tensorflow as tf
from lcmt_tf.steps.tensorflow_steps import ReplicaSeedGenerator

distribution = start_distribution(TrainConfig(distribute="mirrored", num_cpu_devices=2))
strategy = distribution.engine
image = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1), dtype="uint8")
with distribution.scope():
    keras.utils.set_random_seed(0)
    backbone = keras.Sequential([keras.layers.Conv2D(8, 3, padding="same"),
                                 keras.layers.Dropout(0.5, name="dropout")])
    student = from_backbone(backbone, 10, feature_dim=16, input_shape=(8, 8, 1))
    model = MeanTeacher(student, Augmentation([0.5], [0.25], max_translation=2,
                                              horizontal_flip=True, noise_stddev=0.1))
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    dropout = backbone.get_layer("dropout")

def replica_draws():
    return {
        "augmentation": model.augmentation(image, training=True),
        "dropout": dropout(tf.ones((4, 8, 8, 8)), training=True),
        "teacher_dropout": model.teacher.layers[1].get_layer("dropout")(
            tf.ones((4, 8, 8, 8)), training=True),
    }

def replicas_differ():
    draws = strategy.run(replica_draws)
    return {name: bool(np.any(np.asarray(strategy.experimental_local_results(value)[0])
                              != np.asarray(strategy.experimental_local_results(value)[1])))
            for name, value in draws.items()}

before = replicas_differ()
batch = {"labeled_images": np.concatenate([image, image]), "labels": np.zeros(8, "int32"),
         "unlabeled_images": np.concatenate([image] * 4)}
model.fit(Batches(batch), epochs=1, verbose=0, shuffle=False)
after = replicas_differ()

# With one replica the folded generator draws what Keras' own draws.
plain, folded = keras.random.SeedGenerator(7), ReplicaSeedGenerator(7)
same = all(np.array_equal(keras.random.uniform((5,), seed=plain),
                          keras.random.uniform((5,), seed=folded)) for _ in range(3))
print(json.dumps({"before": before, "after": after, "one_replica_unchanged": same,
                  "generators": sorted({type(g).__name__ for layer in model._flatten_layers()
                                        for g in layer._seed_generators})}))
"""


@pytest.mark.tensorflow_only
def test_tensorflow_replicas_draw_their_own_augmentation_and_dropout():
    """Keras' seed generators hand every TensorFlow replica the same seed (the control,
    before training); the training step makes them fold in the replica id, so the
    replicas' translations, flips, noise and dropout masks differ, while one replica
    draws what it always drew."""
    results = run_script(PER_REPLICA_DRAWS, "tensorflow")
    assert results["before"] == {"augmentation": False, "dropout": False, "teacher_dropout": False}
    assert results["after"] == {"augmentation": True, "dropout": True, "teacher_dropout": True}
    assert results["one_replica_unchanged"]
    assert results["generators"] == ["ReplicaSeedGenerator"]
