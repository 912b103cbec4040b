"""Steady-state training throughput of supervised, Mean Teacher and MT+LC steps.

    python scripts/benchmark.py --backend=tensorflow --width=1.0 --steps=10 --output=bench.json
    KERAS_BACKEND=jax python scripts/benchmark.py --backend=jax --mixed_precision=bfloat16

A step is 32 labeled + 128 unlabeled images (MT and MT+LC: each through student and
teacher); the supervised step is the student alone on the 32 labeled images. Each
configuration is warmed up (compilation excluded), then timed `--repeats` times over
`--steps` steps (one fit, one epoch per repeat, so Keras dispatches steps as in
training); the median is reported, and the fastest repeat too: on a shared machine a
repeat can be slowed by others' load. `--inputs=synthetic` feeds one batch from
memory, `--inputs=pipeline` the real SemiSupervisedBatches over in-memory images, so
that an input bottleneck shows as the difference. Prints a table; `--output` writes a
JSON list with one record per configuration.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time

from absl import app, flags

flags.DEFINE_enum("backend", "tensorflow", ["tensorflow", "jax"], "Keras backend")
flags.DEFINE_float("width", 1.0, "conv_large channel multiplier")
flags.DEFINE_enum("mixed_precision", "", ["", "bfloat16", "float16"], "compute dtype")
flags.DEFINE_boolean("jit_compile", False, "XLA-compile the step (JAX always compiles)")
flags.DEFINE_integer("steps", 20, "steps per timed repeat")
flags.DEFINE_integer("steps_per_execution", 1, "steps per call of the compiled train function")
flags.DEFINE_integer("warmup_steps", 3, "untimed steps first (tracing, compilation)")
flags.DEFINE_integer("repeats", 3, "timed repeats; the median is reported")
flags.DEFINE_list("modes", ["supervised", "mt", "mtlc"], "supervised, mt, mtlc")
flags.DEFINE_list("inputs", ["synthetic"], "synthetic and/or pipeline")
flags.DEFINE_string("output", "", "write the records as JSON here")
flags.DEFINE_float("peak_flops", 0.0, "device peak FLOP/s for the utilization column (0 = unknown)")
FLAGS = flags.FLAGS

LABELED, UNLABELED, IMAGE_SHAPE, NUM_CLASSES = 32, 128, (32, 32, 3), 10


def forward_flops(model) -> float:
    """Multiply-adds x 2 of the convolutions and dense layers for one image."""
    import keras

    total = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, channels_out = layer.output.shape
            kernel_height, kernel_width, channels_in, _ = layer.kernel.shape
            total += 2.0 * height * width * kernel_height * kernel_width * channels_in * channels_out
        elif isinstance(layer, keras.layers.Dense):
            total += 2.0 * layer.kernel.shape[0] * layer.kernel.shape[1]
    return total


def build(mode: str):
    import keras

    from lcmt_tf import Augmentation, MeanTeacher, conv_large

    keras.utils.set_random_seed(0)
    student = conv_large(NUM_CLASSES, IMAGE_SHAPE, width=FLAGS.width)
    augmentation = Augmentation([0.49, 0.48, 0.45], [0.25, 0.24, 0.26], max_translation=2, horizontal_flip=True, seed=0)
    optimizer = keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
    compile_options = dict(optimizer=optimizer, jit_compile=FLAGS.jit_compile or "auto",
                           steps_per_execution=FLAGS.steps_per_execution)
    if mode == "supervised":
        images = keras.Input(IMAGE_SHAPE, dtype="uint8")
        _, logits = student(augmentation(images))
        model = keras.Model(images, logits)
        model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), **compile_options)
    else:
        model = MeanTeacher(student, augmentation, ema_decay=0.99, consistency_weight=100.0,
                            lc_weight=10.0 if mode == "mtlc" else 0.0, lc_epsilon=50.0,
                            use_local_clustering=mode == "mtlc")
        model.compile(**compile_options)
    return model, student


def batches(mode: str, source: str, length: int):
    """A PyDataset of `length` batches: one fixed batch (synthetic) or the real
    SemiSupervisedBatches over an in-memory pool, cycled (pipeline)."""
    import keras
    import numpy as np

    from lcmt_tf.data import SemiSupervisedBatches

    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (4096, *IMAGE_SHAPE), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, len(pool)).astype(np.int32)
    pipeline = SemiSupervisedBatches(pool, labels, np.arange(400), np.arange(400, 4096), LABELED, UNLABELED, seed=0)
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


def epoch_timer():
    """A callback recording the wall time of every epoch of one fit. It has only epoch
    hooks, so Keras keeps dispatching steps asynchronously; the epoch's end waits for
    the last step's results."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def time_configuration(mode: str, source: str) -> dict:
    """Warm-up fit (tracing, compilation), then one fit of `repeats` epochs of `steps`
    steps each: every epoch is one timed repeat."""
    from keras import ops

    model, student = build(mode)
    fit = dict(verbose=0, shuffle=False)
    model.fit(batches(mode, source, FLAGS.warmup_steps), epochs=1, **fit)
    timer = epoch_timer()
    start_iterations = int(ops.convert_to_numpy(model.optimizer.iterations))
    model.fit(batches(mode, source, FLAGS.steps), epochs=FLAGS.repeats, callbacks=[timer], **fit)
    steps_run = int(ops.convert_to_numpy(model.optimizer.iterations)) - start_iterations
    if steps_run != FLAGS.repeats * FLAGS.steps:
        raise RuntimeError(f"{steps_run} steps ran, {FLAGS.repeats * FLAGS.steps} were timed")
    per_step = [seconds / FLAGS.steps for seconds in timer.seconds]
    step_time = statistics.median(per_step)
    images = LABELED if mode == "supervised" else LABELED + UNLABELED
    # Training FLOPs: student forward + backward (about 3x forward), plus a teacher forward.
    flops_per_image = forward_flops(student) * (3 if mode == "supervised" else 4)
    images_per_s = images / step_time
    return {
        "mode": mode,
        "input": source,
        "backend": FLAGS.backend,
        "device": _device(),
        "width": FLAGS.width,
        "mixed_precision": FLAGS.mixed_precision or "float32",
        "jit_compile": bool(model.jit_compile),  # what ran: JAX always compiles
        "steps_per_execution": FLAGS.steps_per_execution,
        "images_per_step": images,
        "steps_timed": steps_run,
        "step_time_ms": round(1000 * step_time, 2),
        "step_time_min_ms": round(1000 * min(per_step), 2),
        "images_per_s": round(images_per_s, 1),
        "achieved_flop_per_s": images_per_s * flops_per_image,
        "peak_share": images_per_s * flops_per_image / FLAGS.peak_flops if FLAGS.peak_flops else None,
        "peak_memory_mb": _peak_memory_mb(),
        "step_times_ms": [round(1000 * t, 2) for t in per_step],
    }


def _device() -> str:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return str(jax.devices()[0].device_kind)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def _peak_memory_mb():
    import keras

    if keras.backend.backend() == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return round(stats["peak_bytes_in_use"] / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # process, in MB


def main(argv):
    del argv
    if os.environ.get("KERAS_BACKEND", FLAGS.backend) != FLAGS.backend:
        print(f"benchmark.py: error: KERAS_BACKEND={os.environ['KERAS_BACKEND']} but --backend={FLAGS.backend}",
              file=sys.stderr)
        sys.exit(2)
    os.environ["KERAS_BACKEND"] = FLAGS.backend
    import keras

    if FLAGS.mixed_precision:
        keras.config.set_dtype_policy(f"mixed_{FLAGS.mixed_precision}")
    records = []
    for source in FLAGS.inputs:
        for mode in FLAGS.modes:
            records.append(time_configuration(mode, source))
            print(f"{mode:10s} {source:9s} {records[-1]['step_time_ms']:9.1f} ms/step "
                  f"{records[-1]['images_per_s']:9.1f} images/s", flush=True)
    for record in records:
        mt = next((r for r in records if r["mode"] == "mt" and r["input"] == record["input"]), None)
        record["lc_overhead_pct"] = (
            round(100 * (record["step_time_ms"] / mt["step_time_ms"] - 1), 2)
            if record["mode"] == "mtlc" and mt else None
        )
        record["lc_overhead_min_pct"] = (
            round(100 * (record["step_time_min_ms"] / mt["step_time_min_ms"] - 1), 2)
            if record["mode"] == "mtlc" and mt else None
        )
    print("\n| mode | input | backend | width | precision | jit | ms/step | images/s | GFLOP/s | LC overhead | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in records:
        overhead = f"{r['lc_overhead_pct']:+.1f}%" if r["lc_overhead_pct"] is not None else ""
        print(f"| {r['mode']} | {r['input']} | {r['backend']} | {r['width']} | {r['mixed_precision']} | "
              f"{r['jit_compile']} | {r['step_time_ms']} | {r['images_per_s']} | "
              f"{r['achieved_flop_per_s'] / 1e9:.1f} | {overhead} | {r['peak_memory_mb']} |")
    if FLAGS.output:
        with open(FLAGS.output, "w") as file:
            json.dump(records, file, indent=2)


if __name__ == "__main__":
    app.run(main)
