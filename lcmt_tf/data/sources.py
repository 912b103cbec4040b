"""Where images come from: `--dataset` names a source, each returns an ImageDataset.

Sources:
    cifar10, svhn     tensorflow-datasets (`cifar10`, `svhn_cropped`) under data_dir
    stl10             tensorflow-datasets' `stl10`: train (labeled), test, and its
                      unlabeled split as the unlabeled pool, on disk (lcmt_tf.data.disk)
    npz:PATH          x_train, y_train, x_test, y_test arrays
    folder:PATH       PATH/{train,test}/<class>/ and PATH/unlabeled/ (lcmt_tf.data.folders)
    digits            scikit-learn's bundled 8x8 digits, fixed stratified test split
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import zipfile

import numpy as np

from lcmt_tf.config import TFDS_NAMES, source_kind
from lcmt_tf.errors import UserInputError

UNLABELED = -1  # the label of a training image without one
# tensorflow-datasets data sets with an unlabeled split: the pool's unlabeled images.
TFDS_UNLABELED_SPLITS = {"stl10": "unlabeled"}
EVALUATION_SPLITS = ("test", "validation")
DIGITS_TEST_FRACTION = 0.25
# A class with fewer training images than this is named in a warning (0: an error).
MIN_TRAINING_IMAGES = 2
DIGITS_SPLIT_SEED = 0


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """uint8 images (N, H, W, C) and int32 labels in 0..num_classes-1; `x_unlabeled`,
    training images without labels (a folder's unlabeled/; often none); the class
    names. Without test images (a folder with no test/) x_test is empty. A run with
    --validation_fraction holds some labeled training images out as `x_validation`
    (empty otherwise): the run evaluates on them while it trains, and on the test set
    once at the end."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...] = ()
    x_unlabeled: np.ndarray | None = None
    x_validation: np.ndarray | None = None
    y_validation: np.ndarray | None = None

    def __post_init__(self):
        if not self.class_names:
            object.__setattr__(self, "class_names", tuple(map(str, range(self.num_classes))))
        empty = np.zeros((0, *self.x_train.shape[1:]), np.uint8)
        for name in ("x_unlabeled", "x_validation"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, empty)
        if self.y_validation is None:
            object.__setattr__(self, "y_validation", np.zeros(0, np.int32))

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(images, labels) of the "test" or the "validation" split."""
        if name not in EVALUATION_SPLITS:
            raise ValueError(f"split must be one of {EVALUATION_SPLITS}, not {name!r}")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    @property
    def monitored_split(self) -> str:
        """The split a run evaluates on while it trains: "validation" when it holds one
        out, else "test"."""
        return "validation" if len(self.y_validation) else "test"

    def training_pool(self) -> tuple[np.ndarray, np.ndarray]:
        """Every training image, the labeled classes' first, then x_unlabeled, with
        their labels (UNLABELED, -1, for x_unlabeled). When x_unlabeled is on disk
        (`lcmt_tf.data.disk.DiskImages`) the images are an `ImagePool` over both,
        indexable like an array, and nothing is read until a batch asks for it."""
        if not len(self.x_unlabeled):
            return self.x_train, self.y_train
        unknown = np.full(len(self.x_unlabeled), UNLABELED, np.int32)
        labels = np.concatenate([self.y_train, unknown])
        if not isinstance(self.x_unlabeled, np.ndarray):
            from lcmt_tf.data.disk import ImagePool

            return ImagePool([self.x_train, self.x_unlabeled]), labels
        return np.concatenate([self.x_train, self.x_unlabeled]), labels

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def class_counts(self) -> list[int]:
        """Training images per class, for class 0..num_classes-1."""
        return np.bincount(self.y_train, minlength=self.num_classes).tolist()

    def channel_mean_std(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of all training images, in [0, 1] units (a block
        of images at a time for a pool on disk)."""
        axes = (0, 1, 2)
        images = self.training_pool()[0]
        if not isinstance(images, np.ndarray):
            from lcmt_tf.data.disk import channel_mean_std

            return channel_mean_std([self.x_train, self.x_unlabeled])
        mean = np.mean(images, axis=axes, dtype=np.float64) / 255.0
        mean_square = np.mean(np.square(images, dtype=np.float64), axis=axes) / 255.0**2
        std = np.sqrt(np.maximum(mean_square - mean**2, 0.0))
        return mean.tolist(), np.maximum(std, 1e-3).tolist()


def load_dataset(
    dataset: str,
    data_dir: str | None = None,
    download: bool = False,
    image_size: tuple[int, int] | None = None,
    cache_dir: str | None = "",
    max_image_pixels: int | None = None,
) -> ImageDataset:
    """Loads and validates the source named by `dataset` (see the module docstring).
    `image_size`, `cache_dir` and `max_image_pixels` apply to folders
    (lcmt_tf.data.folders.load_folder)."""
    kind = source_kind(dataset)
    if kind == "tfds":
        *arrays, names = _load_tfds(TFDS_NAMES[dataset], data_dir, download)
        validated = dataclasses.replace(_validated(dataset, *arrays), class_names=names)
        if TFDS_NAMES[dataset] not in TFDS_UNLABELED_SPLITS:
            return validated
        unlabeled = _tfds_unlabeled(TFDS_NAMES[dataset], data_dir, cache_dir)
        if unlabeled.shape[1:] != validated.x_train.shape[1:]:
            raise UserInputError(f"{dataset}: its unlabeled images are {unlabeled.shape[1:]}")
        return dataclasses.replace(validated, x_unlabeled=unlabeled)
    if kind == "digits":
        return _validated(dataset, *_load_digits())
    path = dataset.partition(":")[2]
    if not os.path.exists(path):
        raise UserInputError(f"--dataset={dataset}: {path} does not exist")
    if kind == "npz":
        *arrays, names = _load_npz(path)
        if names:
            labels_end = int(max(arrays[1].max(initial=-1), arrays[3].max(initial=-1))) + 1
            if len(names) < labels_end:
                raise UserInputError(
                    f"{path}: class_names has {len(names)} names, but the labels reach "
                    f"{labels_end - 1} ({labels_end} classes): give one name per class"
                )
            arrays[-1] = len(names)
            counts = np.bincount(arrays[1].astype(np.int64), minlength=len(names))
            if not counts.all():
                raise UserInputError(
                    f"{path}: class {names[int(np.flatnonzero(counts == 0)[0])]} has no "
                    "training images; every class needs some (or leave it out of class_names)"
                )
        validated = _validated(dataset, *arrays)
        return dataclasses.replace(validated, class_names=names) if names else validated

    from lcmt_tf.data.folders import DEFAULT_MAX_IMAGE_PIXELS, load_folder

    x_train, y_train, x_test, y_test, x_unlabeled, names = load_folder(
        path, image_size, cache_dir, max_image_pixels or DEFAULT_MAX_IMAGE_PIXELS
    )
    if x_test is None:  # no test/: only a validation split can evaluate this run
        x_test, y_test = np.zeros((0, *x_train.shape[1:]), np.uint8), np.zeros(0, np.int32)
    validated = _validated(dataset, x_train, y_train, x_test, y_test, len(names))
    return dataclasses.replace(validated, class_names=tuple(names), x_unlabeled=x_unlabeled)


def _tfds_error(name: str, data_dir: str | None, error: Exception) -> UserInputError:
    where = data_dir or "the default tensorflow-datasets folder (~/tensorflow_datasets)"
    how = (
        f"download it where there is internet (`tfds build {name} --data_dir=DIR`, or "
        "rerun there with --download) and pass --data_dir=DIR, or use "
        "--dataset=npz:PATH or --dataset=folder:PATH"
    )
    return UserInputError(
        f"{name} is not available in {where} ({type(error).__name__}: "
        f"{str(error).splitlines()[0][:120] if str(error) else 'no detail'}); {how}"
    )


def _load_tfds(name: str, data_dir: str | None, download: bool):
    import tensorflow_datasets as tfds

    try:
        splits, info = tfds.load(
            name,
            split=["train", "test"],
            data_dir=data_dir,
            as_supervised=True,
            download=download,
            with_info=True,
        )
    except Exception as error:  # tfds raises assertion, import and network errors alike
        raise _tfds_error(name, data_dir, error) from None
    arrays = []
    for split in splits:
        images, labels = [], []
        for image, label in tfds.as_numpy(split):
            images.append(image)
            labels.append(label)
        arrays += [np.stack(images), np.asarray(labels)]
    return (*arrays, None, tuple(info.features["label"].names))


def _tfds_unlabeled(name: str, data_dir: str | None, cache_dir: str | None):
    """The unlabeled split of a tensorflow-datasets data set (stl10: 100,000 images,
    2.8 GB decoded), written once, a batch at a time, into a `.npy` file in the cache
    and read from there as needed (`DiskImages`); in memory when `cache_dir` is None."""
    import tensorflow_datasets as tfds

    from lcmt_tf.data.disk import DiskImages, NpyWriter
    from lcmt_tf.data.folders import default_cache_dir

    try:
        builder = tfds.builder(name, data_dir=data_dir)
        split = tfds.load(
            name, split=TFDS_UNLABELED_SPLITS[name], data_dir=data_dir, download=False
        )
    except Exception as error:  # as in _load_tfds
        raise _tfds_error(name, data_dir, error) from None
    batches = tfds.as_numpy(split.map(lambda example: example["image"]).batch(1024))
    if cache_dir is None:
        return np.concatenate(list(batches))
    place = f"{name} {builder.version} {os.path.realpath(builder.data_dir)}"
    folder = os.path.join(
        cache_dir or default_cache_dir(),
        f"tfds-{name}-{hashlib.sha256(place.encode()).hexdigest()[:16]}",
    )
    path = os.path.join(folder, "x_unlabeled.npy")
    try:
        return DiskImages(path)
    except (OSError, ValueError):
        pass  # not written yet, or cut off: write it (again)
    os.makedirs(folder, exist_ok=True)
    writer = None
    temporary = f"{path}.{os.getpid()}.partial"
    try:
        for images in batches:
            if writer is None:
                writer = NpyWriter(temporary, images.shape[1:])
            writer.write(images)
        writer.close()
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return DiskImages(path)


def _load_digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int32)
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    test = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        test[members[: int(round(len(members) * DIGITS_TEST_FRACTION))]] = True
    return images[~test], labels[~test], images[test], labels[test], 10


def _load_npz(path: str):
    keys = ("x_train", "y_train", "x_test", "y_test")
    if not zipfile.is_zipfile(path):
        raise UserInputError(
            f"{path} is not an .npz archive (the zip file numpy.savez writes, with "
            f"{', '.join(keys)})"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            present = set(archive.files)
            arrays = [archive[key] for key in keys if key in present]
            names = tuple(map(str, archive["class_names"])) if "class_names" in present else ()
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise UserInputError(f"cannot read {path} as a .npz archive: {error}") from None
    missing = [key for key in keys if key not in present]
    if missing:
        raise UserInputError(f"{path} lacks the arrays {missing}; it needs {', '.join(keys)}")
    x_train, y_train, x_test, y_test = arrays
    # Grayscale images may come without a channel axis.
    x_train, x_test = (x[..., None] if x.ndim == 3 else x for x in (x_train, x_test))
    for name, images in (("x_train", x_train), ("x_test", x_test)):
        if images.ndim != 4:
            raise UserInputError(
                f"{path}: {name} has shape {images.shape}; expected N x H x W x C images"
            )
        if images.dtype != np.uint8:
            raise UserInputError(
                f"{path}: {name} has dtype {images.dtype}; expected uint8 images (0..255)"
            )
    return x_train, y_train, x_test, y_test, None, names


def _validated(name, x_train, y_train, x_test, y_test, num_classes) -> ImageDataset:
    """Checks shapes and labels; infers the class count when the source has none."""
    if x_train.shape[1:] != x_test.shape[1:]:
        raise UserInputError(
            f"{name}: train images are {x_train.shape[1:]} but test images are {x_test.shape[1:]}"
        )
    for split, images, labels in (("train", x_train, y_train), ("test", x_test, y_test)):
        if labels.ndim != 1 or len(labels) != len(images):
            raise UserInputError(
                f"{name}: {len(images)} {split} images but labels of shape {labels.shape}"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise UserInputError(
                f"{name}: {split} labels have dtype {labels.dtype}; expected integers"
            )
    if num_classes is None:
        num_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    for split, labels in (("train", y_train), ("test", y_test)):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if bad.size:
            raise UserInputError(
                f"{name}: {split} label {int(bad[0])} is outside 0..{num_classes - 1}"
            )
    counts = np.bincount(y_train.astype(np.int64), minlength=num_classes)
    for label in np.flatnonzero(counts < MIN_TRAINING_IMAGES):
        logging.warning(
            "%s: class %d has %d training image(s): fewer than %d, it cannot be labeled and "
            "left unlabeled both, nor split for validation",
            name, label, counts[label], MIN_TRAINING_IMAGES,
        )  # fmt: skip
    return ImageDataset(
        name=name,
        x_train=np.ascontiguousarray(x_train, np.uint8),
        y_train=y_train.astype(np.int32),
        x_test=np.ascontiguousarray(x_test, np.uint8),
        y_test=y_test.astype(np.int32),
        num_classes=int(num_classes),
    )
