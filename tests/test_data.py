import os
import re

import numpy as np
import pytest

from lcmt_tf.data import LabeledBatches, SemiSupervisedBatches, load_dataset, stratified_label_split
from lcmt_tf.errors import UserInputError


def test_split_is_stratified_disjoint_and_deterministic():
    labels = np.repeat(np.arange(5), [30, 40, 50, 60, 70])
    labeled, unlabeled = stratified_label_split(labels, num_labels=20, num_classes=5, seed=3)
    again, _ = stratified_label_split(labels, num_labels=20, num_classes=5, seed=3)
    other, _ = stratified_label_split(labels, num_labels=20, num_classes=5, seed=4)
    np.testing.assert_array_equal(labeled, again)
    assert not np.array_equal(labeled, other)
    np.testing.assert_array_equal(np.bincount(labels[labeled]), [4] * 5)
    assert np.intersect1d(labeled, unlabeled).size == 0
    np.testing.assert_array_equal(
        np.sort(np.concatenate([labeled, unlabeled])), np.arange(len(labels))
    )


def test_split_is_the_same_on_every_machine():
    # NumPy's PCG64 streams are fixed by its compatibility policy; these indices were
    # recorded once and must not change with the machine or the NumPy release.
    labels = np.tile(np.arange(2), 10)
    assert stratified_label_split(labels, 4, 2, seed=0)[0].tolist() == [5, 7, 12, 14]
    labels = np.repeat(np.arange(3), 7)
    assert stratified_label_split(labels, 6, 3, seed=123)[0].tolist() == [0, 4, 7, 13, 15, 20]


@pytest.mark.parametrize(
    "num_labels,message",
    [(7, "7 labels do not divide into 2 classes"), (40, "class 0 has 10 images, fewer than 20")],
)
def test_split_refuses_impossible_requests(num_labels, message):
    labels = np.tile(np.arange(2), 10)
    with pytest.raises(ValueError, match=message):
        stratified_label_split(labels, num_labels=num_labels, num_classes=2, seed=0)


def make_batches(epoch=0, seed=0):
    images = np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1)
    labels = (np.arange(100) % 10).astype(np.int32)
    labeled = np.arange(0, 100, 10)  # 10 images
    unlabeled = np.setdiff1d(np.arange(100), labeled)  # 90 images
    batches = SemiSupervisedBatches(images, labels, labeled, unlabeled, 4, 16, seed=seed)
    batches.epoch = epoch
    return batches, labeled, unlabeled


def test_batch_composition_and_epoch_length():
    batches, labeled, unlabeled = make_batches()
    assert len(batches) == 90 // 16
    seen_unlabeled = []
    for step in range(len(batches)):
        batch = batches[step]
        assert (
            batch["labeled_images"].shape == (4, 1, 1, 1)
            and batch["labeled_images"].dtype == np.uint8
        )
        assert batch["unlabeled_images"].shape == (16, 1, 1, 1)
        np.testing.assert_array_equal(batch["labels"], batch["labeled_images"][:, 0, 0, 0] % 10)
        assert set(batch["labeled_images"].ravel()) <= set(labeled)
        seen_unlabeled += batch["unlabeled_images"].ravel().tolist()
    # One pass over the unlabeled set without repeats, the remainder (10) dropped.
    assert len(seen_unlabeled) == len(set(seen_unlabeled)) == 80
    assert set(seen_unlabeled) <= set(unlabeled)
    with pytest.raises(IndexError):
        batches[len(batches)]


def test_labeled_stream_cycles_through_reshuffles():
    batches, labeled, _ = make_batches()
    stream = []
    for epoch in range(3):
        batches.epoch = epoch
        stream += [i for step in range(len(batches)) for i in batches.batch_indices(step)[0]]
    # 3 epochs x 5 steps x 4 = 60 labeled draws = 6 full cycles, each a permutation.
    cycles = [stream[i : i + 10] for i in range(0, 60, 10)]
    assert all(sorted(cycle) == sorted(labeled) for cycle in cycles)
    assert len({tuple(cycle) for cycle in cycles}) > 1


def test_batches_are_a_function_of_seed_and_epoch():
    first, _, _ = make_batches(epoch=2)
    second, _, _ = make_batches(epoch=2)
    third, _, _ = make_batches(epoch=3)
    for step in range(len(first)):
        for key in ("labeled_images", "unlabeled_images"):
            np.testing.assert_array_equal(first[step][key], second[step][key])
    assert not np.array_equal(first[0]["unlabeled_images"], third[0]["unlabeled_images"])


def test_labeled_batches_cover_everything_in_order():
    images = np.arange(23, dtype=np.uint8).reshape(23, 1, 1, 1)
    batches = LabeledBatches(images, np.arange(23), 10)
    assert len(batches) == 3
    np.testing.assert_array_equal(np.concatenate([batches[i][1] for i in range(3)]), np.arange(23))


def test_digits_source():
    dataset = load_dataset("digits")
    assert dataset.image_shape == (8, 8, 1) and dataset.num_classes == 10
    assert dataset.x_train.dtype == np.uint8 and dataset.x_train.max() == 255
    assert len(dataset.x_train) + len(dataset.x_test) == 1797
    assert abs(len(dataset.x_test) - 0.25 * 1797) < 10
    np.testing.assert_array_equal(load_dataset("digits").y_test, dataset.y_test)
    assert set(np.unique(dataset.y_test)) == set(range(10))


def write_npz(path, num_train=40, num_test=20, shape=(6, 6, 3), classes=4, seed=0, **overrides):
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (num_train, *shape), dtype=np.uint8),
        "y_train": np.arange(num_train) % classes,
        "x_test": rng.integers(0, 256, (num_test, *shape), dtype=np.uint8),
        "y_test": np.arange(num_test) % classes,
    }
    arrays.update(overrides)
    np.savez(path, **arrays)
    return arrays


def test_npz_source(tmp_path):
    arrays = write_npz(tmp_path / "data.npz")
    dataset = load_dataset(f"npz:{tmp_path / 'data.npz'}")
    np.testing.assert_array_equal(dataset.x_train, arrays["x_train"])
    np.testing.assert_array_equal(dataset.y_test, arrays["y_test"])
    assert dataset.num_classes == 4 and dataset.image_shape == (6, 6, 3)
    mean, std = dataset.channel_mean_std()
    np.testing.assert_allclose(mean, arrays["x_train"].mean((0, 1, 2)) / 255, rtol=1e-10)
    np.testing.assert_allclose(std, arrays["x_train"].std((0, 1, 2)) / 255, rtol=1e-6)


def write_folder(root, shape=(5, 4, 3), per_class=3, classes=("cat", "ant", "bee")):
    from PIL import Image

    rng = np.random.default_rng(0)
    expected = {}
    for split in ("train", "test"):
        for name in classes:
            os.makedirs(root / split / name)
            for index in range(per_class):
                pixels = rng.integers(0, 256, shape, dtype=np.uint8)
                Image.fromarray(pixels.squeeze()).save(root / split / name / f"{index}.png")
                expected[(split, name, index)] = pixels
    return expected


def test_folder_source(tmp_path):
    expected = write_folder(tmp_path)
    dataset = load_dataset(f"folder:{tmp_path}")
    assert dataset.num_classes == 3 and dataset.image_shape == (5, 4, 3)
    # Classes in sorted order: ant 0, bee 1, cat 2; files in sorted order inside each.
    np.testing.assert_array_equal(dataset.y_train, np.repeat([0, 1, 2], 3))
    np.testing.assert_array_equal(dataset.x_train[0], expected[("train", "ant", 0)])
    np.testing.assert_array_equal(dataset.x_test[8], expected[("test", "cat", 2)])


@pytest.mark.tensorflow_only
def test_cifar10_through_tfds_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=30):
        dataset = load_dataset("cifar10", data_dir="/nonexistent")
    assert dataset.image_shape == (32, 32, 3) and dataset.num_classes == 10
    assert len(dataset.x_train) == 30 and dataset.x_train.dtype == np.uint8


@pytest.mark.tensorflow_only
def test_missing_tfds_data_says_how_to_provide_it(tmp_path):
    with pytest.raises(UserInputError, match="npz:PATH or --dataset=folder:PATH"):
        load_dataset("svhn", data_dir=str(tmp_path))


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            {"x_train": np.zeros((4, 6, 6, 3), np.float32)},
            "x_train has dtype float32; expected uint8",
        ),
        ({"x_test": np.zeros((4, 6), np.uint8)}, "x_test has shape (4, 6)"),
    ],
)
def test_npz_errors(tmp_path, overrides, message):
    write_npz(tmp_path / "data.npz", **overrides)
    with pytest.raises(UserInputError, match=re.escape(message)):
        load_dataset(f"npz:{tmp_path / 'data.npz'}")


def test_npz_missing_arrays(tmp_path):
    np.savez(tmp_path / "data.npz", x_train=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(UserInputError, match=r"lacks the arrays \['y_train', 'x_test', 'y_test'\]"):
        load_dataset(f"npz:{tmp_path / 'data.npz'}")
