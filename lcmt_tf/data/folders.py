"""Image folders as a data set: `folder:PATH`, read once and cached decoded.

    PATH/train/<class>/*     labeled images (class = folder name, sorted order)
    PATH/test/<class>/*      test images, the same class folders (optional with a
                             validation split, see lcmt_tf.data.training_data)
    PATH/unlabeled/**/*      images without labels, in any subfolders (optional)

Formats: PNG, JPEG, BMP, WebP. Images of different sizes are refused unless
`image_size` (H, W) is given, which resizes every image (bilinear). A mix of grayscale
and colour images is converted to the mode most of them have, with a warning.

Decoding tens of thousands of files dominates a short run, so the images are decoded
once, on every core, into `.npy` files in `cache_dir`, under a key made of every file's
relative path, size and modification time, the folder's path and the requested image
size: a changed folder is read again. The unlabeled images are then read from there a
batch at a time (`lcmt_tf.data.disk`), so unlabeled/ may hold more than fits in memory.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence

import numpy as np

from lcmt_tf.errors import UserInputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
CACHE_VERSION = 2  # 1: one .npz loaded whole; 2: a folder of .npy files
# PIL modes, by the mode an image becomes: grayscale ("L") or colour ("RGB").
GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
HIGH_BIT_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")  # 16-bit grayscale, as PIL reads it
# Images above this many pixels are refused before they are decoded (PIL's own limit for
# decompression bombs): --max_image_pixels.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "lcmt_tf", "folders")


def image_files(directory: str, skipped: list[str] | None = None) -> list[str]:
    """Image files under `directory`, recursively, in sorted order; the other files
    are added to `skipped` when given. A file that cannot be read (a broken symbolic
    link, no read permission) or a folder that cannot be listed is one line."""

    def refuse(error: OSError) -> None:
        raise UserInputError(f"cannot list {error.filename}: {error.strerror}") from None

    found = []
    for parent, folders, names in os.walk(directory, onerror=refuse):
        folders.sort()
        for name in sorted(names):
            path = os.path.join(parent, name)
            if not is_image_file(name):
                if skipped is not None and not name.startswith("."):
                    skipped.append(path)
                continue
            check_readable(path)
            found.append(path)
    return found


def check_readable(path: str) -> None:
    """One line unless `path` is a file this process can read."""
    if os.path.islink(path) and not os.path.exists(path):
        raise UserInputError(
            f"image {path} is a broken symbolic link (to {os.readlink(path)}, which does not "
            "exist): remove the link or restore its target"
        )
    if not os.access(path, os.R_OK):
        raise UserInputError(f"cannot read image {path}: permission denied")


def image_inputs(inputs: Sequence[str]) -> list[str]:
    """Image files named directly or found under named folders, in order."""
    files = []
    for item in inputs:
        if os.path.isdir(item):
            files += image_files(item)
        elif os.path.isfile(item):
            check_readable(item)
            files.append(item)
        else:
            raise UserInputError(f"--images: {item} does not exist")
    if not files:
        raise UserInputError(f"--images={','.join(inputs)}: no image files found")
    return files


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def folder_listing(root: str) -> dict[str, list[tuple[str, int]]]:
    """{split: [(path, label)]} of a folder data set, label -1 for unlabeled images,
    the class names under "classes" (as [(name, index)]), and under "notes" what the
    listing leaves out and why (each also logged as a warning): class folders under
    test/ that train/ lacks, files that are not images. An empty class folder under
    train/ is an error."""
    train_dir = os.path.join(root, "train")
    if not os.path.isdir(train_dir):
        raise UserInputError(f"{root} needs a train/<class>/ folder of images per class")
    classes = sorted(
        entry for entry in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, entry))
    )
    if len(classes) < 2:
        raise UserInputError(f"{train_dir} needs one folder per class, at least two")
    listing: dict[str, list] = {"classes": [(name, i) for i, name in enumerate(classes)]}
    notes: list[str] = []
    skipped: list[str] = []
    for split in ("train", "test"):
        split_dir = os.path.join(root, split)
        if split == "test" and not os.path.isdir(split_dir):
            continue
        if split == "test":
            extra = sorted(
                entry
                for entry in os.listdir(split_dir)
                if os.path.isdir(os.path.join(split_dir, entry)) and entry not in classes
            )
            if extra:
                notes.append(
                    f"test/ has {len(extra)} class folder(s) that train/ lacks, left out of the "
                    f"evaluation: {', '.join(extra)}"
                )
        entries = []
        for label, name in enumerate(classes):
            class_dir = os.path.join(split_dir, name)
            if not os.path.isdir(class_dir):
                raise UserInputError(
                    f"{class_dir} is missing: train/ and test/ need the same class folders"
                )
            found = image_files(class_dir, skipped)
            if split == "train" and not found:
                raise UserInputError(
                    f"{class_dir} has no images ({', '.join(IMAGE_EXTENSIONS)}): every class "
                    "needs training images (add some, or remove the folder)"
                )
            entries += [(path, label) for path in found]
        if not entries:
            raise UserInputError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {split_dir}/<class>/"
            )
        listing[split] = entries
    unlabeled_dir = os.path.join(root, "unlabeled")
    if os.path.isdir(unlabeled_dir):
        listing["unlabeled"] = [(path, -1) for path in image_files(unlabeled_dir, skipped)]
        if not listing["unlabeled"]:
            raise UserInputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {unlabeled_dir}")
    if skipped:
        notes.append(
            f"{len(skipped)} file(s) that are not images ({', '.join(IMAGE_EXTENSIONS)}) were "
            f"skipped, e.g. {skipped[0]}"
        )
    for note in notes:
        logging.warning("%s: %s", root, note)
    listing["notes"] = notes
    return listing


def cache_key(root: str, listing: dict, image_size: tuple[int, int] | None) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION} {os.path.realpath(root)} {image_size}".encode())
    for split in ("train", "test", "unlabeled"):
        for path, label in listing.get(split, []):
            status = os.stat(path)
            relative = os.path.relpath(path, root)
            digest.update(
                f"{split}\0{relative}\0{label}\0{status.st_size}\0{status.st_mtime_ns}\n".encode()
            )
    return digest.hexdigest()[:32]


def unreadable(path: str, error: Exception) -> UserInputError:
    return UserInputError(f"cannot read image {path}: corrupt or truncated ({error})")


def open_image(path: str, max_pixels: int):
    """The PIL image of `path`, opened (its header read, nothing decoded) and refused
    with one line above `max_pixels` pixels or when it is not a readable image: the
    one check every path that reads images goes through. PIL's own limit is left to
    this one (PIL refuses twice its limit while opening, with its own error)."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # every image is checked against max_pixels below
    try:
        image = Image.open(path)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise unreadable(path, error) from None
    if image.width * image.height > max_pixels:
        image.close()
        raise UserInputError(
            f"image {path} is {image.width}x{image.height} = "
            f"{image.width * image.height:,} pixels, over the limit of {max_pixels:,} "
            "(--max_image_pixels); resize it, or raise the limit if you trust it"
        )
    return image


def target_mode(paths: list[str], max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> str:
    """'L' or 'RGB': the mode most images have (a warning when they are mixed)."""
    modes = collections.Counter()
    for path in paths:
        with open_image(path, max_pixels) as image:
            modes["L" if image.mode in GRAYSCALE_MODES else "RGB"] += 1
    mode = "L" if modes["L"] > modes["RGB"] else "RGB"
    if len(modes) > 1:
        logging.warning(
            "%d grayscale and %d colour images: all are converted to %s",
            modes["L"],
            modes["RGB"],
            "grayscale" if mode == "L" else "RGB",
        )
    return mode


def read_image(
    path: str,
    mode: str,
    image_size: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """(H, W, C) uint8 array of one image file, converted to `mode`, resized to
    `image_size` (H, W) if given. 16-bit grayscale is scaled to 8 bits (65535 -> 255),
    not clipped. A file that cannot be decoded, or larger than `max_pixels` (checked
    from its header, before decoding), is a UserInputError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open_image(path, max_pixels) as image:
            image.load()
            if image.mode in HIGH_BIT_DEPTH_MODES:
                values = np.asarray(image, dtype=np.float64)
                image = Image.fromarray(np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8))
            image = image.convert(mode)
            if image_size is not None and image.size != (image_size[1], image_size[0]):
                image = image.resize((image_size[1], image_size[0]), Image.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (
        OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError
    ) as error:  # fmt: skip
        if isinstance(error, UserInputError):
            raise
        raise unreadable(path, error) from None
    return array[..., None] if array.ndim == 2 else array


DECODE_BLOCK = 256  # images a decoding worker handles at a time
PARALLEL_DECODE_MIN = 2048  # fewer images than this are decoded in this process


def _decode_block(arguments) -> list[np.ndarray]:
    """A worker's share: the images of a block of paths (top level, for pickling)."""
    paths, mode, image_size, max_pixels = arguments
    return [read_image(path, mode, image_size, max_pixels) for path in paths]


class Progress:
    """A progress line on stderr for decoding many images: redrawn in place on a
    terminal, a log line every tenth of the way otherwise."""

    def __init__(self, total: int, what: str):
        import sys
        import time

        self.total, self.what, self.done, self.start = total, what, 0, time.monotonic()
        self.stream, self.interactive = sys.stderr, sys.stderr.isatty()
        self.next_log = total / 10

    def update(self, count: int) -> None:
        import time

        self.done += count
        rate = self.done / max(time.monotonic() - self.start, 1e-9)
        line = f"decoding {self.what}: {self.done:,}/{self.total:,} images ({rate:,.0f}/s)"
        if self.interactive:
            end = "\n" if self.done >= self.total else ""
            print(f"\r{line}", end=end, file=self.stream, flush=True)
        elif self.done >= self.next_log or self.done >= self.total:
            logging.info(line)
            self.next_log += self.total / 10


def decode_images(
    entries: list[tuple[str, int]],
    mode: str,
    image_size,
    max_pixels: int,
    sink,
    what: str,
    workers: int | None = None,
) -> tuple[int, ...]:
    """Decodes the images of `entries` in order, in blocks, on every core (a pool of
    `workers` processes, by default one per core; in this process for a few hundred
    images), and gives each block, stacked, to `sink`; returns the image shape. Images
    of different sizes are refused when no `image_size` is given."""
    paths = [path for path, _ in entries]
    blocks = [paths[i : i + DECODE_BLOCK] for i in range(0, len(paths), DECODE_BLOCK)]
    arguments = [(block, mode, image_size, max_pixels) for block in blocks]
    workers = workers or os.cpu_count() or 1
    progress = Progress(len(paths), what)
    shapes: list[tuple[int, ...]] = []  # the first image's

    def check(images: list[np.ndarray], block: list[str]) -> np.ndarray:
        shapes.append(shapes[0] if shapes else images[0].shape)
        for image, path in zip(images, block):
            if image.shape != shapes[0]:
                raise UserInputError(
                    f"images of different shapes: {path} is {image.shape}, {paths[0]} is "
                    f"{shapes[0]}; pass --image_size=H,W to resize them to one size"
                )
        progress.update(len(images))
        return np.stack(images)

    if workers > 1 and len(paths) >= PARALLEL_DECODE_MIN:
        import concurrent.futures
        import multiprocessing

        # spawn, not fork: the parent may already run a backend's threads.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            for block, images in zip(blocks, pool.map(_decode_block, arguments)):
                sink(check(images, block))
    else:
        for block, argument in zip(blocks, arguments):
            sink(check(_decode_block(argument), block))
    return shapes[0]


def decode(
    entries: list[tuple[str, int]],
    mode: str,
    image_size,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    what: str = "images",
) -> tuple[np.ndarray, np.ndarray]:
    """Stacked images (in memory) and labels of `entries` (`decode_images`)."""
    blocks: list[np.ndarray] = []
    decode_images(entries, mode, image_size, max_pixels, blocks.append, what)
    labels = np.asarray([label for _, label in entries], np.int32)
    return np.concatenate(blocks), labels


def decode_to_file(
    entries: list[tuple[str, int]],
    mode: str,
    image_size,
    max_pixels: int,
    path: str,
    what: str,
) -> None:
    """The images of `entries` decoded into the `.npy` file `path`, a block at a time
    (never all in memory), and their labels beside it (`path` with y_ for x_)."""
    from lcmt_tf.data.disk import NpyWriter

    writers: list[NpyWriter] = []  # made once the first block tells the image shape

    def write(block: np.ndarray) -> None:
        if not writers:
            writers.append(NpyWriter(path, block.shape[1:], count=len(entries)))
        writers[0].write(block)

    try:
        decode_images(entries, mode, image_size, max_pixels, write, what)
    finally:
        for writer in writers:
            writer.file.close()
    writers[0].close()
    labels = np.asarray([label for _, label in entries], np.int32)
    np.save(os.path.join(os.path.dirname(path), "y_" + os.path.basename(path)[2:]), labels)


SPLITS = ("train", "test", "unlabeled")


def load_folder(
    root: str,
    image_size: tuple[int, int] | None = None,
    cache_dir: str | None = "",
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
):
    """(x_train, y_train, x_test, y_test, x_unlabeled, class_names) of `folder:ROOT`;
    x_test and y_test are None without a test/ folder, x_unlabeled is (0, H, W, C)
    without an unlabeled/ folder. cache_dir: "" = the user cache directory, None =
    no cache (everything decoded into memory).

    The cache is a folder of `.npy` files per folder data set (`cache_key`): the
    labeled and test images are read into memory, the unlabeled ones stay on disk
    (`lcmt_tf.data.disk.DiskImages`), read a batch at a time, so the unlabeled pool may
    be larger than memory."""
    listing = folder_listing(root)
    class_names = [name for name, _ in listing["classes"]]
    splits = [split for split in SPLITS if split in listing]
    if cache_dir == "":
        cache_dir = default_cache_dir()
    if cache_dir is None:
        mode = target_mode([path for split in splits for path, _ in listing[split]], max_pixels)
        arrays = {}
        for split in splits:
            arrays[f"x_{split}"], arrays[f"y_{split}"] = decode(
                listing[split], mode, image_size, max_pixels, f"{split}/"
            )
        _check_shapes(root, {split: arrays[f"x_{split}"].shape[1:] for split in splits})
        return _unpack(arrays, class_names)
    folder = os.path.join(cache_dir, cache_key(root, listing, image_size))
    if os.path.isdir(folder):
        try:
            arrays = _read_cache(folder, splits)
            logging.info("Read the decoded images of %s from %s.", root, folder)
            return _unpack(arrays, class_names)
        except (OSError, ValueError, KeyError, EOFError) as error:
            # A cache is a cache: decode the folder again, and replace it.
            logging.warning(
                "The decoded-image cache %s is damaged (%s): decoding %s again.",
                folder, error, root,
            )  # fmt: skip
    mode = target_mode([path for split in splits for path, _ in listing[split]], max_pixels)
    try:
        os.makedirs(cache_dir, exist_ok=True)
        temporary = tempfile.mkdtemp(prefix=".decoding-", dir=cache_dir)
    except OSError as error:
        logging.warning("Could not cache the decoded images in %s: %s", cache_dir, error)
        return load_folder(root, image_size, None, max_pixels)
    try:
        for split in splits:
            path = os.path.join(temporary, f"x_{split}.npy")
            decode_to_file(listing[split], mode, image_size, max_pixels, path, f"{split}/")
        arrays = _read_cache(temporary, splits)
        _check_shapes(root, {split: arrays[f"x_{split}"].shape[1:] for split in splits})
        if os.path.isdir(folder):  # the damaged cache it replaces
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(temporary, folder)
        except OSError:
            if not os.path.isdir(folder):
                raise
            shutil.rmtree(temporary, ignore_errors=True)  # another process wrote it first
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        logging.warning("Could not cache the decoded images in %s: %s", cache_dir, error)
        return load_folder(root, image_size, None, max_pixels)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return _unpack(_read_cache(folder, splits), class_names)


def _read_cache(folder: str, splits: list[str]) -> dict:
    """The arrays of a cache folder: labels and the labeled and test images in memory,
    the unlabeled images on disk."""
    from lcmt_tf.data.disk import DiskImages

    arrays = {}
    for split in splits:
        arrays[f"y_{split}"] = np.load(os.path.join(folder, f"y_{split}.npy"))
        path = os.path.join(folder, f"x_{split}.npy")
        arrays[f"x_{split}"] = DiskImages(path) if split == "unlabeled" else np.load(path)
        if len(arrays[f"x_{split}"]) != len(arrays[f"y_{split}"]):
            raise ValueError(f"{path} and its labels differ in length")
    return arrays


def _check_shapes(root: str, shapes: dict) -> None:
    if len(set(shapes.values())) > 1:
        shown = ", ".join(f"{split} {shape}" for split, shape in shapes.items())
        raise UserInputError(
            f"images of different shapes in {root} ({shown}); pass --image_size=H,W to resize"
        )


def _unpack(arrays: dict, class_names: list[str]):
    x_train = arrays["x_train"]
    empty = np.zeros((0, *x_train.shape[1:]), np.uint8)
    return (
        x_train,
        arrays["y_train"],
        arrays.get("x_test"),
        arrays.get("y_test"),
        arrays.get("x_unlabeled", empty),
        class_names,
    )
