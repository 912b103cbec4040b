"""Canaries for the two places lcmt_tf relies on Keras internals (lcmt_tf/steps/
tensorflow_steps.py), because Keras offers no public way: each fails loudly when a Keras
release changes what the workaround depends on. The version bound in setup.cfg is the
range these were checked on."""

import configparser
import os

import keras
import numpy as np
import pytest
from packaging.requirements import Requirement

from conftest import ROOT, small_mean_teacher

pytestmark = pytest.mark.tensorflow_only  # the workarounds are in the TensorFlow steps


def test_the_installed_keras_is_within_the_range_setup_cfg_allows():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    requirements = [
        Requirement(line) for line in parser["options"]["install_requires"].split("\n") if line
    ]
    (keras_requirement,) = [r for r in requirements if r.name == "keras"]
    assert any(spec.operator == "<" for spec in keras_requirement.specifier)  # an upper bound
    assert keras_requirement.specifier.contains(keras.__version__)


def test_keras_still_has_the_build_step_the_multi_worker_workaround_overrides():
    from lcmt_tf.steps.tensorflow_steps import TensorFlowSteps

    trainer = keras.src.backend.tensorflow.trainer.TensorFlowTrainer
    assert callable(getattr(trainer, "_maybe_symbolic_build", None)), (
        "Keras no longer has TensorFlowTrainer._maybe_symbolic_build: review "
        "TensorFlowSteps._maybe_symbolic_build (keras-team/keras#20329)"
    )
    assert "_maybe_symbolic_build" in vars(TensorFlowSteps)


def test_every_seed_generator_is_found_and_dropout_draws_through_it():
    from lcmt_tf.steps.tensorflow_steps import ReplicaSeedGenerator

    model = small_mean_teacher()  # digits_net has dropout; the augmentation draws too
    generators = model.seed_generators()
    dropouts = [
        layer
        for network in (model.student, model.teacher)
        for layer in network.layers
        if isinstance(layer, keras.layers.Dropout)
    ]
    assert dropouts and model.augmentation.seed_generator in generators
    assert len(generators) == 1 + len(dropouts)

    calls = []

    class Counting(ReplicaSeedGenerator):
        def next(self, ordered=True):
            calls.append(self)
            return super().next(ordered=ordered)

    for generator in generators:
        generator.__class__ = Counting  # what draw_per_replica does, observable
    images = np.zeros((2, 8, 8, 1), "float32")
    model.student(images, training=True)
    assert calls, (
        "Keras' Dropout no longer draws through the layer's SeedGenerator.next: "
        "draw_per_replica would not give replicas their own dropout masks"
    )
