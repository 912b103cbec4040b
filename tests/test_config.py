"""TrainConfig: the one place a run's settings are checked, alone and against its data."""

import dataclasses

import numpy as np
import pytest

from lcmt_tf.config import TrainConfig
from lcmt_tf.data import ImageDataset
from lcmt_tf.errors import UserInputError


def dataset(num_per_class=(30, 30, 30), image_size=32):
    labels = np.repeat(np.arange(len(num_per_class)), num_per_class).astype(np.int32)
    images = np.zeros((len(labels), image_size, image_size, 3), np.uint8)
    return ImageDataset("toy", images, labels, images[:3], labels[:3], len(num_per_class))


def test_every_field_carries_its_flag_help():
    for field in dataclasses.fields(TrainConfig):
        assert field.metadata.get("help"), f"{field.name} has no help text"


def test_defaults_are_valid_and_fit_the_digits_shape():
    config = TrainConfig().validate()
    digits_like = dataset(num_per_class=(140,) * 10, image_size=8)
    assert config.check_against_data(digits_like) is config


@pytest.mark.parametrize(
    "settings,data,message",
    [
        (
            dict(num_labels=10),
            dataset(),
            "--num_labels=10 is not divisible by the 3 classes; use a multiple of 3",
        ),
        (
            dict(num_labels=90),
            dataset(),
            "--num_labels=90 needs 30 labeled images of class 0 plus unlabeled ones, "
            "but it has 30 images",
        ),
        (
            dict(num_labels=30, unlabeled_batch_size=64),
            dataset(num_per_class=(30, 30, 30)),
            "60 unlabeled images do not fill one batch of --unlabeled_batch_size=64",
        ),
        (
            dict(num_labels=3, model="conv_large"),
            dataset(image_size=8),
            "conv_large needs images of at least 12x12, toy has 8x8; use --model=digits_net or "
            "--model=wrn_28_2",
        ),
        (
            dict(num_labels=3, model="digits_net"),
            dataset(image_size=1),
            "digits_net needs images of at least 2x2, toy has 1x1; use larger images",
        ),
        (
            dict(num_labels=3, translate=8),
            dataset(image_size=8),
            "--translate=8 must be smaller than the image size 8x8",
        ),
    ],
)
def test_settings_the_data_cannot_satisfy_are_refused_with_the_fix(settings, data, message):
    config = TrainConfig(unlabeled_batch_size=settings.pop("unlabeled_batch_size", 16), **settings)
    with pytest.raises(UserInputError) as error:
        config.validate().check_against_data(data)
    assert str(error.value) == message


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(process_id=1), "--coordinator_address, --num_processes and --process_id launch "
         "--distribute=multi_worker"),
        (dict(distribute="multi_worker", num_processes=2, process_id=2),
         "--process_id=2 must be below --num_processes=2"),
        (dict(distribute="several"), "--distribute must be one of none, mirrored, multi_worker, "
         "not 'several'"),
    ],
)  # fmt: skip
def test_distribution_settings_are_checked(settings, message):
    with pytest.raises(UserInputError) as error:
        TrainConfig(**settings).validate()
    assert str(error.value) == message


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(method="mixmatch"), "--method must be mean_teacher or fixmatch, not 'mixmatch'"),
        (dict(lr_schedule="cosine"), "--lr_schedule=cosine needs --lr_schedule_steps=K >= 1, "
         "the steps its decay is planned over (FixMatch: 1048576)"),
        (dict(lr_schedule="cosine", lr_schedule_steps=10, lr_decay_epochs=5),
         "--lr_decay_epochs is the linear schedule's; with --lr_schedule=cosine set it to 0"),
        (dict(fixmatch_threshold=1.5), "--fixmatch_threshold must be in [0, 1]"),
        (dict(unlabeled_ratio=-1), "--unlabeled_ratio must be >= 0 (0 = as given)"),
        (dict(strong_cutout=1.0), "--strong_cutout must be in [0, 1)"),
    ],
)  # fmt: skip
def test_fixmatch_settings_are_checked(settings, message):
    with pytest.raises(UserInputError) as error:
        TrainConfig(**settings).validate()
    assert str(error.value) == message


def test_unlabeled_ratio_sets_the_unlabeled_batch_and_zero_keeps_it():
    assert TrainConfig(labeled_batch_size=64, unlabeled_ratio=7).unlabeled_batch_size == 448
    assert TrainConfig(unlabeled_batch_size=100, unlabeled_ratio=0).unlabeled_batch_size == 100
