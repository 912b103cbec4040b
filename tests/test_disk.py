"""Unlabeled pools on disk (lcmt_tf.data.disk): the .npy files, what reads them, and
that training sees exactly the batches it sees with the same images in memory."""

import os
import pickle
import signal
import time

import numpy as np
import pytest

from lcmt_tf.data import SemiSupervisedBatches, load_dataset
from lcmt_tf.data import folders as folder_module
from lcmt_tf.data.disk import DiskImages, ImagePool, NpyWriter, channel_mean_std

from conftest import NO_STARTUP_CHECK, train


def write_pool(path, images, block=7, count_known=False):
    writer = NpyWriter(str(path), images.shape[1:], count=len(images) if count_known else None)
    for start in range(0, len(images), block):
        writer.write(images[start : start + block])
    writer.close()
    return DiskImages(str(path))


def random_images(count, shape=(6, 5, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, *shape), dtype=np.uint8)


@pytest.mark.parametrize("count_known", [True, False])
def test_a_pool_written_in_blocks_reads_back_as_numpy_reads_it(tmp_path, count_known):
    images = random_images(50)
    pool = write_pool(tmp_path / "pool.npy", images, count_known=count_known)
    np.testing.assert_array_equal(np.load(tmp_path / "pool.npy"), images)  # NumPy's format
    assert pool.shape == images.shape and len(pool) == 50 and pool.dtype == np.uint8
    rows = np.array([49, 0, 17, 17, 3])
    np.testing.assert_array_equal(pool[rows], images[rows])
    np.testing.assert_array_equal(pool[10:20], images[10:20])
    np.testing.assert_array_equal(pool[7], images[7])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(pool))[rows], images[rows])


def test_rows_missing_from_the_page_cache_are_read_by_threads_into_their_places(
    tmp_path, monkeypatch
):
    from lcmt_tf.data import disk

    images = random_images(300)
    pool = write_pool(tmp_path / "pool.npy", images)
    rows = np.random.default_rng(1).integers(0, 300, 100)
    reads = {"cache only": 0, "blocking": []}
    real_read_into = DiskImages._read_into

    def every_other_row_uncached(self, row_buffer, row, flags=0):
        if flags:  # the page-cache pass: rows of odd index are "not cached"
            reads["cache only"] += 1
            return row % 2 == 0 and real_read_into(self, row_buffer, row, flags)
        reads["blocking"].append(row)
        return real_read_into(self, row_buffer, row, flags)

    monkeypatch.setattr(DiskImages, "_read_into", every_other_row_uncached)
    np.testing.assert_array_equal(pool[rows], images[rows])
    if disk.NOWAIT is not None:
        assert reads["cache only"] == 100
        assert sorted(reads["blocking"]) == sorted(row for row in rows.tolist() if row % 2)
    # In a forked child (the pool's threads are not inherited), reads still work.
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 when the rows read back right
        os._exit(0 if np.array_equal(pool[rows], images[rows]) else 1)
    deadline = time.monotonic() + 60  # a child waiting on threads it lacks would hang
    while (finished := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if finished[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert finished[0] == pid and os.waitstatus_to_exitcode(finished[1]) == 0
    monkeypatch.setattr(disk, "NOWAIT", None)  # where RWF_NOWAIT does not exist
    np.testing.assert_array_equal(pool[rows], images[rows])


def test_a_cut_off_pool_is_refused(tmp_path):
    write_pool(tmp_path / "pool.npy", random_images(20))
    data = (tmp_path / "pool.npy").read_bytes()
    (tmp_path / "pool.npy").write_bytes(data[: len(data) - 30])
    with pytest.raises(ValueError, match="is cut off"):
        DiskImages(str(tmp_path / "pool.npy"))


def test_a_pool_of_parts_indexes_like_their_concatenation(tmp_path):
    labeled, unlabeled = random_images(7, seed=1), random_images(30, seed=2)
    pool = ImagePool([labeled, write_pool(tmp_path / "u.npy", unlabeled)])
    together = np.concatenate([labeled, unlabeled])
    rows = np.random.default_rng(0).permutation(37)
    np.testing.assert_array_equal(pool[rows], together[rows])
    np.testing.assert_array_equal(pool[-1], together[-1])
    assert pool.shape == together.shape


def test_blockwise_channel_statistics_match_the_whole_array(tmp_path):
    labeled, unlabeled = random_images(9, seed=3), random_images(33, seed=4)
    on_disk = write_pool(tmp_path / "u.npy", unlabeled)
    together = np.concatenate([labeled, unlabeled]).astype(np.float64) / 255.0
    mean, std = channel_mean_std([labeled, on_disk], block_rows=5)
    np.testing.assert_allclose(mean, together.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(std, together.std(axis=(0, 1, 2)), rtol=1e-10)


def test_training_batches_from_disk_are_the_batches_from_memory(tmp_path):
    images = random_images(300, shape=(8, 8, 1), seed=5)
    labels = np.repeat(np.arange(10), 30).astype(np.int32)
    pool = ImagePool([images[:100], write_pool(tmp_path / "u.npy", images[100:])])
    arguments = (np.arange(0, 100, 5), np.arange(300)[np.arange(300) % 5 != 0], 8, 16)
    in_memory = SemiSupervisedBatches(images, labels, *arguments, seed=3)
    on_disk = SemiSupervisedBatches(pool, labels, *arguments, seed=3)
    for epoch in (0, 1, 7):
        in_memory.epoch = on_disk.epoch = epoch
        for step in range(len(in_memory)):
            for key, value in in_memory[step].items():
                np.testing.assert_array_equal(on_disk[step][key], value, err_msg=key)
    # A process of a multi-worker run reads only its share of each global batch.
    share = SemiSupervisedBatches(pool, labels, *arguments, seed=3, process_share=(1, 2))
    share.epoch = 7
    np.testing.assert_array_equal(
        share[2]["unlabeled_images"], in_memory[2]["unlabeled_images"][8:]
    )


def write_folder_with_unlabeled(root, count=120):
    from PIL import Image

    rng = np.random.default_rng(6)
    for split, per_class in (("train", 6), ("test", 3)):
        for name in ("a", "b"):
            os.makedirs(root / split / name)
            for index in range(per_class):
                pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{index}.png")
    os.makedirs(root / "unlabeled" / "x")
    for index in range(count):
        pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "unlabeled" / "x" / f"{index:04d}.png")


def test_a_cached_folder_reads_its_unlabeled_images_from_disk(tmp_path, monkeypatch):
    write_folder_with_unlabeled(tmp_path / "data")
    in_memory = load_dataset(f"folder:{tmp_path / 'data'}", cache_dir=None)
    # Decoded on several processes, as a large folder is.
    monkeypatch.setattr(folder_module, "PARALLEL_DECODE_MIN", 10)
    monkeypatch.setattr(folder_module, "DECODE_BLOCK", 16)
    cached = load_dataset(f"folder:{tmp_path / 'data'}", cache_dir=str(tmp_path / "cache"))
    again = load_dataset(f"folder:{tmp_path / 'data'}", cache_dir=str(tmp_path / "cache"))
    for dataset in (cached, again):
        assert isinstance(dataset.x_unlabeled, DiskImages)
        np.testing.assert_array_equal(dataset.x_unlabeled[:], in_memory.x_unlabeled)
        np.testing.assert_array_equal(dataset.x_train, in_memory.x_train)
        np.testing.assert_array_equal(dataset.y_test, in_memory.y_test)
        np.testing.assert_allclose(
            np.array(dataset.channel_mean_std()), np.array(in_memory.channel_mean_std()), rtol=1e-10
        )
    pool, labels = cached.training_pool()
    assert isinstance(pool, ImagePool) and len(pool) == len(labels) == 132


@pytest.mark.tensorflow_only  # two deterministic runs (TensorFlow op determinism)
def test_a_run_on_a_folder_from_disk_ends_where_the_same_run_from_memory_ends(tmp_path):
    write_folder_with_unlabeled(tmp_path / "data", count=64)
    common = [
        f"--dataset=folder:{tmp_path / 'data'}", "--model=digits_net", "--width=0.25",
        "--num_labels=all", "--unlabeled_batch_size=16", "--labeled_batch_size=4",
        "--epochs=2", "--lc_weight=1", "--lc_start_epoch=1", "--lr_decay_epochs=1",
        "--deterministic", "--verbose=0", NO_STARTUP_CHECK,
    ]  # fmt: skip
    from_disk = train(*common, f"--cache_dir={tmp_path / 'cache'}", f"--model_dir={tmp_path / 'a'}")
    from_memory = train(*common, "--cache_dir=none", f"--model_dir={tmp_path / 'b'}")
    assert from_disk.returncode == 0 and from_memory.returncode == 0, from_disk.stderr[-2000:]
    assert any((tmp_path / "cache").iterdir())
    with (
        np.load(tmp_path / "a" / "training_state.npz") as a,
        np.load(tmp_path / "b" / "training_state.npz") as b,
    ):
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert (tmp_path / "a" / "history.csv").read_text() == (
        tmp_path / "b" / "history.csv"
    ).read_text()


@pytest.mark.slow
@pytest.mark.tensorflow_only  # tensorflow-datasets
def test_stl10_trains_with_its_unlabeled_split_on_disk(tmp_path):
    import tensorflow_datasets as tfds

    from lcmt_tf.config import TrainConfig
    from lcmt_tf.train import run

    with tfds.testing.mock_data(num_examples=24):
        dataset = load_dataset("stl10", cache_dir=str(tmp_path / "cache"))
        assert dataset.image_shape == (96, 96, 3) and dataset.num_classes == 10
        assert isinstance(dataset.x_unlabeled, DiskImages) and len(dataset.x_unlabeled) == 24
        results = run(
            TrainConfig(
                dataset="stl10",
                num_labels="all",
                model="digits_net",
                width=0.25,
                epochs=1,
                labeled_batch_size=4,
                unlabeled_batch_size=8,
                lc_weight=1.0,
                eval_every=1,
                cache_dir=str(tmp_path / "cache"),
                model_dir=str(tmp_path / "run"),
                verbose=0,
            )  # fmt: skip
        )
    assert results["completed"] and (results["num_labeled"], results["num_unlabeled"]) == (24, 24)
