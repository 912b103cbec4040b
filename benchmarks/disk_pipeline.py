r"""Unlabeled pools on disk: how fast batches come from them, and how much memory a
training on a pool larger than its memory budget takes.

1. Pipeline: `SemiSupervisedBatches` over 4,000 labeled images in memory and an
   unlabeled pool of N random 32x32 RGB images in a `.npy` file on disk
   (`lcmt_tf.data.disk.DiskImages`), the paper's 32 + 128 images a step. Steps/s with
   the file's pages evicted from the page cache first (cold: posix_fadvise DONTNEED),
   and after one pass over the pool (warm); the same pool in memory for comparison.
2. A folder: 300 labeled 96x96 images (30 per class), 100 test images and
   --folder_images unlabeled ones, written as PNG files; decoded into the cache (`lcmt
   check-data`), then one epoch of `lcmt train` from it (digits_net at --width: the
   point is the data, not the network), and the same training on a folder of 1,000
   unlabeled images held in memory, for the memory the network and the backend take
   themselves. Each process's peak resident memory (VmHWM), against the decoded size.

    python benchmarks/disk_pipeline.py --output=docs/results/cpu_disk_pipeline.json

Writes a JSON record and prints a table. Needs a few GB of free disk in --work_dir
(1M 32x32 images are 3.1 GB; 100,000 96x96 PNG files about 1 GB).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

flags.DEFINE_string("work_dir", "/tmp/lcmt_disk_benchmark", "scratch folder (data, cache, runs)")
flags.DEFINE_string("output", "", "write the record as JSON here")
flags.DEFINE_list("pool_sizes", ["50000", "1000000"], "unlabeled 32x32 images of each pool")
flags.DEFINE_integer("cold_steps", 300, "steps timed right after the page cache is emptied")
flags.DEFINE_integer("warm_steps", 2000, "steps timed after a pass over the pool")
flags.DEFINE_integer("folder_images", 100000, "unlabeled 96x96 images of the folder (0: skip)")
flags.DEFINE_string("backend", "tensorflow", "KERAS_BACKEND of the training runs")
flags.DEFINE_float("width", 0.125, "digits_net's width in the folder runs")
FLAGS = flags.FLAGS

LABELED_POOL, LABELED, UNLABELED, BLOCK = 4000, 32, 128, 10000


def write_random_pool(path: str, count: int, shape=(32, 32, 3)) -> None:
    from lcmt_tf.data.disk import NpyWriter

    if os.path.exists(path) and os.path.getsize(path) >= count * int(np.prod(shape)):
        return
    rng = np.random.default_rng(count)
    writer = NpyWriter(path + ".partial", shape, count=count)
    for start in range(0, count, BLOCK):
        writer.write(rng.integers(0, 256, (min(BLOCK, count - start), *shape), dtype=np.uint8))
    writer.close()
    os.replace(path + ".partial", path)


def evict(path: str) -> None:
    """Drops the file's pages from the page cache (they are clean: nothing is lost)."""
    with open(path, "rb") as file:
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def steps_per_second(batches, steps: int, start_step: int = 0) -> float:
    begin = time.perf_counter()
    for step in range(start_step, start_step + steps):
        batches[step % len(batches)]
    return steps / (time.perf_counter() - begin)


def pipeline(count: int) -> dict:
    from lcmt_tf.data import SemiSupervisedBatches
    from lcmt_tf.data.disk import DiskImages, ImagePool

    path = os.path.join(FLAGS.work_dir, f"pool_{count}.npy")
    write_random_pool(path, count)
    rng = np.random.default_rng(0)
    labeled = rng.integers(0, 256, (LABELED_POOL, 32, 32, 3), dtype=np.uint8)
    labels = np.concatenate([rng.integers(0, 10, LABELED_POOL), np.full(count, -1)]).astype(
        np.int32
    )
    indices = (np.arange(LABELED_POOL), np.arange(LABELED_POOL, LABELED_POOL + count))

    def batches(pool):
        return SemiSupervisedBatches(pool, labels, *indices, LABELED, UNLABELED, seed=0)

    on_disk = batches(ImagePool([labeled, DiskImages(path)]))
    evict(path)
    cold = steps_per_second(on_disk, FLAGS.cold_steps)
    steps_per_second(on_disk, len(on_disk))  # one pass: every page in the page cache
    warm = steps_per_second(on_disk, FLAGS.warm_steps, start_step=FLAGS.cold_steps)
    in_memory = batches(np.concatenate([labeled, np.load(path)]))
    memory = steps_per_second(in_memory, FLAGS.warm_steps)
    del in_memory
    return {
        "unlabeled_images": count,
        "pool_bytes": os.path.getsize(path),
        "steps_per_epoch": len(on_disk),
        "disk_cold_steps_per_s": round(cold, 1),
        "disk_warm_steps_per_s": round(warm, 1),
        "memory_steps_per_s": round(memory, 1),
        "disk_warm_images_per_s": round(warm * (LABELED + UNLABELED)),
    }


def _write_pngs(arguments) -> None:
    from PIL import Image

    folder, seed, count = arguments
    rng = np.random.default_rng(seed)
    # Smooth images (an 8x8 pattern, upsampled): realistic PNG sizes, not noise.
    for index in range(count):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((96, 96), Image.BILINEAR)
        image.save(os.path.join(folder, f"{seed}_{index:06d}.png"))


def write_folder(root: str, count: int) -> None:
    import multiprocessing

    marker = os.path.join(root, f".complete_{count}")
    if os.path.exists(marker):
        return
    jobs = []
    for split, per_class in (("train", 30), ("test", 10)):
        for label in range(10):
            folder = os.path.join(root, split, f"class_{label}")
            os.makedirs(folder, exist_ok=True)
            jobs.append((folder, 1000 * (split == "test") + label, per_class))
    unlabeled = os.path.join(root, "unlabeled")
    os.makedirs(unlabeled, exist_ok=True)
    chunk = 5000
    jobs += [
        (unlabeled, 10_000 + start, min(chunk, count - start)) for start in range(0, count, chunk)
    ]
    with multiprocessing.get_context("spawn").Pool() as pool:
        pool.map(_write_pngs, jobs)
    open(marker, "w").close()


def peak_memory_of(command: list[str], env: dict) -> tuple[int, float, int]:
    """(exit status, wall seconds, peak resident bytes (VmHWM)) of a command."""
    begin = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = 0
    status_path = f"/proc/{process.pid}/status"
    output = []
    while process.poll() is None:
        try:
            with open(status_path) as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
        except OSError:
            pass
        time.sleep(0.2)
    output.append(process.stdout.read().decode(errors="replace"))
    print(output[-1][-1500:])
    return process.returncode, time.perf_counter() - begin, peak


def folder_training(count: int) -> dict:
    """Decodes the folder into the cache (`lcmt check-data`), then trains one epoch
    from it; and, for the memory the network itself takes, the same training on a folder
    of 1,000 unlabeled images decoded into memory."""
    root = os.path.join(FLAGS.work_dir, f"folder_{count}")
    small = os.path.join(FLAGS.work_dir, "folder_1000")
    begin = time.perf_counter()
    write_folder(root, count)
    write_folder(small, 1000)
    written_s = time.perf_counter() - begin
    cache = os.path.join(FLAGS.work_dir, "cache")
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "KERAS_BACKEND": FLAGS.backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    data = ["--num_labels=all", "--model=digits_net", f"--width={FLAGS.width}"]
    train = [*data, "--epochs=1", "--eval_every=1", "--overwrite", "--verbose=2"]
    steps = {
        "decode into the cache (lcmt check-data)": [
            "lcmt_tf.cli.check_data", f"--dataset=folder:{root}", *data, f"--cache_dir={cache}"
        ],
        "one epoch from the cache": [
            "lcmt_tf.cli.train", f"--dataset=folder:{root}", *train, f"--cache_dir={cache}",
            f"--model_dir={os.path.join(FLAGS.work_dir, 'run_disk')}",
        ],
        "one epoch, 1,000 unlabeled images in memory (the network's own memory)": [
            "lcmt_tf.cli.train", f"--dataset=folder:{small}", *train, "--cache_dir=none",
            f"--model_dir={os.path.join(FLAGS.work_dir, 'run_memory')}",
        ],
    }  # fmt: skip
    runs = []
    for name, arguments in steps.items():
        command = [sys.executable, "-m", *arguments]
        status, seconds, peak = peak_memory_of(command, env)
        runs.append(
            {
                "step": name,
                "command": " ".join(["python -m", *arguments]),
                "exit_status": status,
                "wall_s": round(seconds, 1),
                "peak_resident_bytes": peak,
            }
        )
    return {
        "unlabeled_images": count,
        "image_shape": [96, 96, 3],
        "decoded_bytes": count * 96 * 96 * 3,
        "folders_written_s": round(written_s, 1),
        "runs": runs,
    }


def main(argv):
    del argv
    os.makedirs(FLAGS.work_dir, exist_ok=True)
    from lcmt_tf.provenance import software

    record = {"software": software(), "pipeline": [], "folder": None}
    for count in map(int, FLAGS.pool_sizes):
        record["pipeline"].append(pipeline(count))
        print(json.dumps(record["pipeline"][-1]))
    record["pipeline_process_peak_resident_bytes"] = (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    if FLAGS.folder_images:
        record["folder"] = folder_training(FLAGS.folder_images)
        print(json.dumps(record["folder"], indent=1))
    print("| unlabeled 32x32 images | cold steps/s | warm steps/s | in memory steps/s |")
    print("|---:|---:|---:|---:|")
    for row in record["pipeline"]:
        print(
            f"| {row['unlabeled_images']:,} | {row['disk_cold_steps_per_s']:,.0f} "
            f"| {row['disk_warm_steps_per_s']:,.0f} | {row['memory_steps_per_s']:,.0f} |"
        )
    if FLAGS.output:
        with open(FLAGS.output, "w") as file:
            json.dump(record, file, indent=2)


if __name__ == "__main__":
    app.run(main)
