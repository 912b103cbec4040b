r"""What the confirmation-bias diagnostics (--diagnostics_sample) cost.

1. The digits demo (`--flagfile=digits`, 100 epochs, an evaluation every 5) trained in
   this process with the diagnostics off (--diagnostics_sample=0) and on (the default,
   2,000: here the whole pool of about 1,300 images), each timed as a whole; with the
   diagnostics on, every call of ConfirmationBiasMonitor's epoch hook is timed too.
2. The paper's network (--model, full width) on random 32x32 images: one training step
   (MT+LC, 32 + 128 images) and one diagnostics measurement over --sample images
   (student and teacher in inference mode, then lcmt_tf.diagnostics.confirmation_bias),
   compiled first, timed after. Reported against the training between two evaluations
   of a paper setting (--setting: its steps per epoch times --eval_every).

    python benchmarks/diagnostics_cost.py --output=docs/results/cpu_diagnostics_cost.json
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time

from absl import app, flags

flags.DEFINE_string("output", "", "write the record as JSON here")
flags.DEFINE_string("model", "conv_large_wn", "part 2: the network (the paper's by default)")
flags.DEFINE_string("setting", "cifar10_4000", "part 2: the paper setting the cost is set against")
flags.DEFINE_integer("sample", 2000, "part 2: images measured (the --diagnostics_sample default)")
flags.DEFINE_integer("steps", 3, "part 2: training steps timed (after one to compile)")
flags.DEFINE_list("parts", ["demo", "paper_network"], "what to measure")
FLAGS = flags.FLAGS


def timed(function, seconds: list):
    """`function`, with the wall time of every call appended to `seconds`."""

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    return wrapper


def demo() -> dict:
    """Part 1: the demo with the diagnostics off and on."""
    import keras

    from lcmt_tf.callbacks import ConfirmationBiasMonitor
    from lcmt_tf.flagfiles import train_config
    from lcmt_tf.train import run

    record = {"command": "lcmt train --flagfile=digits --diagnostics_sample=0 | 2000"}
    hook = ConfirmationBiasMonitor.on_epoch_end
    for sample in (0, 2000):
        with tempfile.TemporaryDirectory() as model_dir:
            args = ["--flagfile=digits", f"--model_dir={model_dir}", "--verbose=0"]
            config = train_config([*args, f"--diagnostics_sample={sample}"])
            calls: list[float] = []
            ConfirmationBiasMonitor.on_epoch_end = timed(hook, calls)
            try:
                keras.utils.clear_session()
                start = time.perf_counter()
                results = run(config)
                seconds = time.perf_counter() - start
            finally:
                ConfirmationBiasMonitor.on_epoch_end = hook
        measured = [s for s in calls if s > 1e-3]  # the epochs without an evaluation return at once
        record[f"sample_{sample}"] = {
            "run_seconds": round(seconds, 1),
            "teacher_test_error": results.get("teacher_test_error"),
            "diagnostics_images": (results.get("confirmation_bias") or {}).get("images"),
            "evaluations_measured": len(measured),
            "diagnostics_seconds": round(sum(measured), 2),
            "first_evaluation_seconds": round(measured[0], 3) if measured else None,
            "later_evaluation_median_seconds": (
                round(statistics.median(measured[1:]), 3) if len(measured) > 1 else None
            ),
        }
        print(json.dumps(record[f"sample_{sample}"]))
    on, off = record["sample_2000"], record["sample_0"]
    record["diagnostics_share_of_run_pct"] = round(
        100 * on["diagnostics_seconds"] / on["run_seconds"], 2
    )
    record["run_seconds_added"] = round(on["run_seconds"] - off["run_seconds"], 1)
    return record


def paper_network() -> dict:
    """Part 2: one diagnostics measurement against the training between evaluations."""
    import keras
    import numpy as np

    from lcmt_tf.benchmark import (
        benchmark_config,
        build_benchmark_model,
        random_images,
        time_configuration,
    )
    from lcmt_tf.callbacks import ConfirmationBiasMonitor
    from lcmt_tf.diagnostics import confirmation_bias
    from lcmt_tf.flagfiles import train_config

    setting = train_config([f"--flagfile={FLAGS.setting}"])
    config = benchmark_config("mtlc", model=FLAGS.model)
    step = time_configuration("mtlc", "synthetic", config, FLAGS.steps, 1, 1)
    keras.utils.clear_session()
    dataset = random_images()
    model, _ = build_benchmark_model("mtlc", config, dataset)
    images, labels = dataset.x_train[: FLAGS.sample], dataset.y_train[: FLAGS.sample]
    monitor = ConfirmationBiasMonitor(images, labels, evaluate_at=[1])
    monitor.set_model(model)
    monitor.measure()  # compiles
    epsilon = float(keras.ops.convert_to_numpy(model.lc_epsilon))
    forward, compute = [], []
    for _ in range(2):
        start = time.perf_counter()
        features, predictions = monitor.measure()
        forward.append(time.perf_counter() - start)
        start = time.perf_counter()
        confirmation_bias(features, predictions, labels, epsilon, predictions)
        compute.append(time.perf_counter() - start)
    measurement = min(forward) + min(compute)
    unlabeled = 50_000 - setting.num_labels  # CIFAR-10's training set
    steps_between = (unlabeled // setting.unlabeled_batch_size) * setting.eval_every
    training = steps_between * step["step_time_ms"] / 1000
    return {
        "model": FLAGS.model,
        "width": config.width,
        "sample": FLAGS.sample,
        "forward_seconds": round(min(forward), 3),
        "diagnostics_numpy_seconds": round(min(compute), 3),
        "training_step_ms": step["step_time_ms"],
        "setting": FLAGS.setting,
        "steps_between_evaluations": steps_between,
        "training_between_evaluations_seconds": round(training, 1),
        "measurement_in_training_steps": round(measurement / (step["step_time_ms"] / 1000), 2),
        "diagnostics_share_pct": round(100 * measurement / (measurement + training), 3),
        "note": "random images: only the costs are meaningful, not the diagnostics",
        "features_shape": list(np.shape(features)),
    }


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from lcmt_tf.provenance import software

    record = {"software": software()}
    if "demo" in FLAGS.parts:
        record["demo"] = demo()
    if "paper_network" in FLAGS.parts:
        record["paper_network"] = paper_network()
        print(json.dumps(record["paper_network"], indent=1))
    if FLAGS.output:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
        with open(FLAGS.output, "w") as file:
            json.dump(record, file, indent=2)
    print(json.dumps({k: v for k, v in record.items() if k != "software"}, indent=1))


if __name__ == "__main__":
    app.run(main)
