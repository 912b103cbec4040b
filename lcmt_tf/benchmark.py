"""Steady-state training throughput of the supervised, Mean Teacher and MT+LC steps.

The library side of scripts/benchmark.py. A step is 32 labeled + 128 unlabeled images
(MT and MT+LC: each through student and teacher); the supervised step is the student
alone on the 32 labeled images. Models are built by `lcmt_tf.builders.build_model` from a
TrainConfig with the paper's CIFAR-10 settings, on random 32x32 RGB images.

Each configuration is warmed up (compilation excluded), then timed `repeats` times
over `steps` steps (one fit, one epoch per repeat, so Keras dispatches steps as in
training); the median and the fastest repeat are recorded. Inputs are one fixed
batch from memory ("synthetic") or the real SemiSupervisedBatches over in-memory
images ("pipeline"), so that an input bottleneck shows as the difference.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time

import keras
import numpy as np
from keras import ops

from lcmt_tf.builders import assign_full_weights, build_model, build_optimizer, configure_backend
from lcmt_tf.config import TrainConfig
from lcmt_tf.data import ImageDataset, SemiSupervisedBatches

MODES = ("supervised", "mt", "mtlc")
INPUTS = ("synthetic", "pipeline")
LABELED, UNLABELED, IMAGE_SHAPE, NUM_CLASSES = 32, 128, (32, 32, 3), 10
POOL_SIZE, POOL_LABELED = 4096, 400


def benchmark_config(
    mode: str,
    model: str = "conv_large",
    forward_passes: str = "joint",
    width: float = 1.0,
    mixed_precision: str = "",
    jit_compile: bool = False,
    steps_per_execution: int = 1,
) -> TrainConfig:
    """The paper's CIFAR-10 step (flips, lambda1 100, and for MT+LC lambda2 10 with
    epsilon 50) for the given network, width and compile options."""
    return TrainConfig(
        dataset="cifar10",
        model=model,
        forward_passes=forward_passes,
        width=width,
        hflip=True,
        translate=2,
        labeled_batch_size=LABELED,
        unlabeled_batch_size=UNLABELED,
        consistency_weight=100.0,
        lc_weight=10.0 if mode == "mtlc" else 0.0,
        lc_epsilon=50.0,
        mixed_precision=mixed_precision,
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    ).validate()


def random_images(seed: int = 0) -> ImageDataset:
    """POOL_SIZE random 32x32 RGB images with random labels (test split unused)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (POOL_SIZE, *IMAGE_SHAPE), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, POOL_SIZE).astype(np.int32)
    return ImageDataset("random", images, labels, images[:1], labels[:1], NUM_CLASSES)


def build_benchmark_model(mode: str, config: TrainConfig, dataset: ImageDataset):
    """(compiled model, student): the MeanTeacher of `config` for mt and mtlc; for
    supervised, its student behind the same augmentation, trained with CE alone.
    Networks with data-dependent initialization are initialized from one batch."""
    configure_backend(config)  # seed and dtype policy
    # The Mean Teacher step as it was before LC existed: no LC distances measured.
    model = build_model(
        config, dataset, init_images=dataset.x_train[:LABELED], measure_local_clustering=False
    )
    if mode != "supervised":
        assign_full_weights(model, config)
        return model, model.student
    images = keras.Input(IMAGE_SHAPE, dtype="uint8")
    _, logits = model.student(model.augmentation(images))
    supervised = keras.Model(images, logits)
    supervised.compile(
        optimizer=build_optimizer(config),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=model.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
    return supervised, model.student


def batches(mode: str, source: str, length: int, dataset: ImageDataset) -> keras.utils.PyDataset:
    """`length` batches: one fixed batch (synthetic) or SemiSupervisedBatches over the
    dataset, cycled (pipeline); (images, labels) of the labeled part for supervised."""
    pipeline = SemiSupervisedBatches(
        dataset.x_train,
        dataset.y_train,
        np.arange(POOL_LABELED),
        np.arange(POOL_LABELED, POOL_SIZE),
        LABELED,
        UNLABELED,
        seed=0,
    )
    fixed = pipeline[0]

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return length

        def __getitem__(self, index):
            batch = fixed if source == "synthetic" else pipeline[index % len(pipeline)]
            if mode == "supervised":
                return batch["labeled_images"], batch["labels"]
            return batch

    return Batches()


class EpochTimer(keras.callbacks.Callback):
    """Records the wall time of every epoch of one fit. It has only epoch hooks, so
    Keras keeps dispatching steps asynchronously; an epoch's end waits for its last
    step's results."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def forward_flops(model: keras.Model) -> float:
    """Multiply-adds x 2 of the convolutions and dense layers (any layer with a 4-D or
    2-D `kernel`, the weight-normalized ones included) for one image."""
    total = 0.0
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        if len(kernel.shape) == 4:
            _, height, width, _ = layer.output.shape
            total += 2.0 * height * width * float(np.prod(kernel.shape))
        elif len(kernel.shape) == 2:
            total += 2.0 * float(np.prod(kernel.shape))
    return total


def time_configuration(
    mode: str,
    source: str,
    config: TrainConfig,
    steps: int,
    warmup_steps: int,
    repeats: int,
    peak_flops: float = 0.0,
) -> dict:
    """Warm-up fit (tracing, compilation), then one fit of `repeats` epochs of
    `steps` steps: each epoch is one timed repeat. Returns the record."""
    dataset = random_images()
    model, student = build_benchmark_model(mode, config, dataset)
    fit = dict(verbose=0, shuffle=False)
    model.fit(batches(mode, source, warmup_steps, dataset), epochs=1, **fit)
    timer = EpochTimer()
    start_iterations = int(ops.convert_to_numpy(model.optimizer.iterations))
    model.fit(batches(mode, source, steps, dataset), epochs=repeats, callbacks=[timer], **fit)
    steps_run = int(ops.convert_to_numpy(model.optimizer.iterations)) - start_iterations
    if steps_run != repeats * steps:
        raise RuntimeError(f"{steps_run} steps ran, {repeats * steps} were timed")
    per_step = [seconds / steps for seconds in timer.seconds]
    step_time = statistics.median(per_step)
    images = LABELED if mode == "supervised" else LABELED + UNLABELED
    # Training FLOPs: student forward + backward (about 3x forward), plus a teacher forward.
    flops_per_image = forward_flops(student) * (3 if mode == "supervised" else 4)
    images_per_s = images / step_time
    return {
        "mode": mode,
        "input": source,
        "backend": keras.backend.backend(),
        "device": device_name(),
        "model": config.model,
        "forward_passes": config.forward_passes,
        "width": config.width,
        "mixed_precision": config.mixed_precision or "float32",
        "jit_compile": bool(model.jit_compile),  # what ran: JAX always compiles
        "steps_per_execution": config.steps_per_execution,
        "images_per_step": images,
        "steps_timed": steps_run,
        "step_time_ms": round(1000 * step_time, 2),
        "step_time_min_ms": round(1000 * min(per_step), 2),
        "images_per_s": round(images_per_s, 1),
        "achieved_flop_per_s": images_per_s * flops_per_image,
        "peak_share": images_per_s * flops_per_image / peak_flops if peak_flops else None,
        "peak_memory_mb": peak_memory_mb(),
        "step_times_ms": [round(1000 * t, 2) for t in per_step],
    }


def add_lc_overhead(records: list[dict]) -> list[dict]:
    """Sets lc_overhead_pct (medians) and lc_overhead_min_pct (fastest repeats) of
    each MT+LC record against the MT record of the same input; None elsewhere."""
    for record in records:
        mt = next((r for r in records if r["mode"] == "mt" and r["input"] == record["input"]), None)
        paired = record["mode"] == "mtlc" and mt is not None
        for key, time_key in (
            ("lc_overhead_pct", "step_time_ms"),
            ("lc_overhead_min_pct", "step_time_min_ms"),
        ):
            record[key] = round(100 * (record[time_key] / mt[time_key] - 1), 2) if paired else None
    return records


def markdown_table(records: list[dict]) -> str:
    lines = [
        "| mode | input | backend | model, passes | width | precision | jit | ms/step | images/s "
        "| GFLOP/s | LC overhead | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        overhead = f"{r['lc_overhead_pct']:+.1f}%" if r["lc_overhead_pct"] is not None else ""
        lines.append(
            f"| {r['mode']} | {r['input']} | {r['backend']} | {r['model']}, {r['forward_passes']} "
            f"| {r['width']} "
            f"| {r['mixed_precision']} | {r['jit_compile']} | {r['step_time_ms']} "
            f"| {r['images_per_s']} | {r['achieved_flop_per_s'] / 1e9:.1f} | {overhead} "
            f"| {r['peak_memory_mb']} |"
        )
    return "\n".join(lines)


def device_name() -> str:
    if keras.backend.backend() == "jax":
        import jax

        return str(jax.devices()[0].device_kind)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def peak_memory_mb() -> float:
    """Peak device memory on JAX where the device reports it, else the process's
    peak resident memory."""
    if keras.backend.backend() == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return round(stats["peak_bytes_in_use"] / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class LocalClusteringProbe(keras.Model):
    """Local Clustering alone, as a Keras model whose weights are the features: a
    training step is LC's forward and backward pass over one batch of features (and
    an SGD update of them), on any backend."""

    def __init__(self, num_labeled: int, num_unlabeled: int, feature_dim: int, method: str):
        super().__init__()
        self.num_labeled, self.method = num_labeled, method
        self.features = self.add_weight(
            shape=(num_labeled + num_unlabeled, feature_dim),
            initializer=keras.initializers.RandomNormal(stddev=1.0, seed=0),
            name="features",
        )

    def call(self, inputs):
        from lcmt_tf.losses import local_clustering

        loss, _ = local_clustering(
            self.features[: self.num_labeled], self.features[self.num_labeled :], 2.0, self.method
        )
        return ops.zeros_like(inputs) + loss


def time_local_clustering(
    num_labeled: int,
    num_unlabeled: int,
    feature_dim: int = 128,
    repeats: int = 5,
    steps: int = 3,
    method: str = "auto",
) -> dict:
    """Median and fastest seconds of one LC forward + backward (+ update) step over
    num_labeled + num_unlabeled features, after one warm-up step, and the process's
    peak memory above what it used before the model was built (run it in a fresh
    process per batch size)."""
    baseline_mb = peak_memory_mb()
    probe = LocalClusteringProbe(num_labeled, num_unlabeled, feature_dim, method)
    probe.compile(optimizer=keras.optimizers.SGD(1e-3), loss=lambda _, loss: ops.mean(loss))
    inputs, targets = np.zeros((steps, 1), "float32"), np.zeros((steps, 1), "float32")
    probe.fit(inputs[:1], targets[:1], batch_size=1, epochs=1, verbose=0)
    timer = EpochTimer()
    probe.fit(inputs, targets, batch_size=1, epochs=repeats, verbose=0, callbacks=[timer])
    per_step = [seconds / steps for seconds in timer.seconds]
    return {
        "num_labeled": num_labeled,
        "num_unlabeled": num_unlabeled,
        "feature_dim": feature_dim,
        "method": method,
        "backend": keras.backend.backend(),
        "step_time_ms": round(1000 * statistics.median(per_step), 2),
        "fastest_step_time_ms": round(1000 * min(per_step), 2),
        "peak_memory_mb": round(peak_memory_mb() - baseline_mb, 1),
        "device": device_name(),
    }
