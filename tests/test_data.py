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


def test_process_shares_are_equal_slices_that_concatenate_to_the_global_batch():
    batches, _, _ = make_batches(epoch=1)
    shares = []
    for index in range(2):
        share = SemiSupervisedBatches(
            batches.images, batches.labels, batches.labeled_indices,
            batches.unlabeled_indices, 4, 16, seed=0, process_share=(index, 2),
        )  # fmt: skip
        share.epoch = 1
        shares.append(share)
    for step in range(len(batches)):
        for key in ("labeled_images", "labels", "unlabeled_images"):
            joined = np.concatenate([share[step][key] for share in shares])
            np.testing.assert_array_equal(joined, batches[step][key])
            # Whatever a process feeds, every process can measure on the global batch.
            np.testing.assert_array_equal(shares[1].global_batches()[step][key], batches[step][key])
    with pytest.raises(ValueError, match="does not split"):
        SemiSupervisedBatches(
            batches.images, batches.labels, batches.labeled_indices,
            batches.unlabeled_indices, 4, 16, seed=0, process_share=(0, 3),
        )  # fmt: skip


def test_padded_evaluation_batches_count_every_image_once():
    images = np.arange(23, dtype=np.uint8).reshape(23, 1, 1, 1)
    labels = np.arange(23)
    for count in (1, 2):
        parts = [
            LabeledBatches(images, labels, 12, pad_multiple=4, process_share=(index, count))
            for index in range(count)
        ]
        batches = [[part[i] for part in parts] for i in range(len(parts[0]))]
        # Every slice has the same size, the global batch a multiple of 4 (24 = 12 + 12).
        assert [sum(len(p[1]) for p in batch) for batch in batches] == [12, 12]
        assert len({len(p[1]) for batch in batches for p in batch}) == 1
        weights = np.concatenate([p[2] for batch in batches for p in batch])
        counted = np.concatenate([p[1] for batch in batches for p in batch])[weights > 0]
        np.testing.assert_array_equal(np.sort(counted), labels)
        assert weights.sum() == 23


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


def save_image(path, pixels, **options):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels.squeeze()).save(path, **options)


def test_folder_with_unlabeled_images_in_subfolders_and_every_format(tmp_path):
    rng = np.random.default_rng(1)
    expected = {}
    for index, ending in enumerate(("png", "bmp", "webp", "jpg")):
        pixels = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        options = {"lossless": True} if ending == "webp" else {}
        save_image(tmp_path / "train" / "b" / f"{index}.{ending}", pixels, **options)
        expected[ending] = pixels
        save_image(tmp_path / "train" / "a" / f"{index}.png", pixels)
    for index in range(5):  # nested, in any subfolder
        save_image(tmp_path / "unlabeled" / f"part{index % 2}" / f"{index}.png",
                   np.full((6, 6, 3), index, np.uint8))  # fmt: skip
    (tmp_path / "unlabeled" / "notes.txt").write_text("not an image")
    dataset = load_dataset(f"folder:{tmp_path}", cache_dir=None)
    assert dataset.class_names == ("a", "b") and len(dataset.y_test) == 0
    for ending in ("png", "bmp", "webp"):  # lossless formats come back exactly
        position = 4 + ("png", "bmp", "webp").index(ending)  # b's files: 0.png, 1.bmp, 2.webp
        np.testing.assert_array_equal(dataset.x_train[position], expected[ending])
    # Sorted walk: part0/0.png, part0/2.png, part0/4.png, part1/1.png, part1/3.png.
    assert dataset.x_unlabeled[:, 0, 0, 0].tolist() == [0, 2, 4, 1, 3]
    images, labels = dataset.training_pool()
    assert len(images) == 13 and labels[8:].tolist() == [-1] * 5


def test_mixed_sizes_are_refused_unless_resized(tmp_path):
    write_folder(tmp_path, shape=(6, 6, 3), per_class=2, classes=("a", "b"))
    save_image(tmp_path / "unlabeled" / "big.png", np.zeros((12, 10, 3), np.uint8))
    with pytest.raises(UserInputError, match=r"different shapes.*--image_size=H,W"):
        load_dataset(f"folder:{tmp_path}", cache_dir=None)
    dataset = load_dataset(f"folder:{tmp_path}", image_size=(4, 5), cache_dir=None)
    assert dataset.image_shape == (4, 5, 3) and dataset.x_unlabeled.shape == (1, 4, 5, 3)


def test_mixed_grayscale_and_colour_become_the_majority_mode(tmp_path, caplog):
    write_folder(tmp_path, shape=(6, 6), per_class=2, classes=("a", "b"))  # grayscale
    colour = np.zeros((6, 6, 3), np.uint8)
    colour[..., 0] = 255
    save_image(tmp_path / "unlabeled" / "red.png", colour)
    with caplog.at_level("WARNING"):
        dataset = load_dataset(f"folder:{tmp_path}", cache_dir=None)
    assert "8 grayscale and 1 colour images: all are converted to grayscale" in caplog.text
    assert dataset.image_shape == (6, 6, 1)
    # PIL's luminance: L = 0.299 R + 0.587 G + 0.114 B.
    assert dataset.x_unlabeled[0, 0, 0, 0] == round(0.299 * 255)


def test_decoded_folders_are_cached_and_read_again_when_a_file_changes(tmp_path, monkeypatch):
    from lcmt_tf.data import folders

    data = tmp_path / "data"
    write_folder(data, per_class=2, classes=("a", "b"))
    cache = tmp_path / "cache"
    first = load_dataset(f"folder:{data}", cache_dir=str(cache))
    assert len(cache_folders(cache)) == 1
    decoded = []
    real_read = folders.read_image
    monkeypatch.setattr(folders, "read_image", lambda *a: decoded.append(a) or real_read(*a))
    again = load_dataset(f"folder:{data}", cache_dir=str(cache))
    assert decoded == []  # nothing decoded: all from the cache
    np.testing.assert_array_equal(again.x_train, first.x_train)
    assert again.class_names == first.class_names
    save_image(data / "train" / "a" / "0.png", np.zeros((5, 4, 3), np.uint8))
    changed = load_dataset(f"folder:{data}", cache_dir=str(cache))
    assert len(decoded) == 8 and changed.x_train[0].max() == 0
    assert len(cache_folders(cache)) == 2


def cache_folders(cache):
    """The decoded folders in a cache directory (not one being written)."""
    return [path for path in cache.iterdir() if path.is_dir() and not path.name.startswith(".")]


def test_a_folder_without_images_says_where(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "b").mkdir()
    with pytest.raises(UserInputError, match=r"no images \(.png, .jpg, .jpeg, .bmp, .webp\)"):
        load_dataset(f"folder:{tmp_path}", cache_dir=None)


def test_stratified_holdout_takes_the_share_of_every_class():
    from lcmt_tf.data import stratified_holdout

    labels = np.repeat([0, 1, 2], [10, 20, 3])
    kept, held = stratified_holdout(labels, 0.2, seed=4)
    assert np.bincount(labels[held]).tolist() == [2, 4, 1]
    assert sorted(set(kept) | set(held)) == list(range(33)) and not set(kept) & set(held)
    np.testing.assert_array_equal(stratified_holdout(labels, 0.2, seed=4)[1], held)
