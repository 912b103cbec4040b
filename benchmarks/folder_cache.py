"""How long loading an image folder takes without and with the decoded-image cache.

    python benchmarks/folder_cache.py --dataset=folder:../shared/data/cifar10 \
        --output=docs/results/cpu_folder_cache.json

Loads the folder three times: without a cache (every file decoded), with an empty
cache (decoded, then written), and from the cache; checks the cached arrays equal the
decoded ones, prints the times and writes them as JSON. The operating system's file
cache is warm after the first load, so the second time is the one to compare.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from lcmt_tf.data import load_dataset  # noqa: E402
from lcmt_tf.provenance import software  # noqa: E402

flags.DEFINE_string("dataset", "folder:../shared/data/cifar10", "a folder: data set")
flags.DEFINE_string("output", None, "JSON file to write the times to")
FLAGS = flags.FLAGS


def timed(**kwargs):
    start = time.perf_counter()
    dataset = load_dataset(FLAGS.dataset, **kwargs)
    return dataset, time.perf_counter() - start


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as cache_dir:
        decoded, no_cache = timed(cache_dir=None)
        _, writing = timed(cache_dir=cache_dir)
        cached, reading = timed(cache_dir=cache_dir)
        cache_bytes = sum(
            os.path.getsize(os.path.join(parent, name))
            for parent, _, names in os.walk(cache_dir)
            for name in names
        )
    for name in ("x_train", "y_train", "x_test", "y_test", "x_unlabeled"):
        np.testing.assert_array_equal(getattr(cached, name), getattr(decoded, name))
    record = {
        "dataset": FLAGS.dataset,
        "images": int(len(decoded.y_train) + len(decoded.y_test) + len(decoded.x_unlabeled)),
        "decode_without_cache_s": round(no_cache, 3),
        "decode_and_write_cache_s": round(writing, 3),
        "read_from_cache_s": round(reading, 3),
        "speedup_over_decoding": round(no_cache / reading, 1),
        "cache_file_mb": round(cache_bytes / 2**20, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "command": "python benchmarks/folder_cache.py " + " ".join(sys.argv[1:]),
        "software": software(),
    }
    print(json.dumps(record, indent=2))
    if FLAGS.output:
        with open(FLAGS.output, "w") as file:
            json.dump(record, file, indent=2)
            file.write("\n")


if __name__ == "__main__":
    app.run(main)
