"""The compute a FixMatch setting needs, measured here and projected to the whole run.

    python benchmarks/fixmatch_compute.py --setting=cifar10_fixmatch_4000 \\
        --set=dataset=folder:CIFAR10 --steps=3 \\
        --output=docs/results/cpu_fixmatch_cifar10_compute.json

Resolves the setting's flag file (and its `_lc` twin, if there is one) as `lcmt train`
does, loads the data and builds the model as the run will, and measures the mean time
of `--steps` training steps after one warm-up step (`runner.measure_step_seconds`, as
`lcmt experiment --plan` measures).
From it and from the network's size it reports, per step and for the run (FixMatch's
steps, and the twin's steps after its fork):

- `cpu_s_per_step`: measured on this machine, and the run's CPU time at that rate
  (a projection: the same rate for every step);
- `train_flop_per_step`: 3 x the student's forward FLOPs per image
  (`lcmt_tf.benchmark.forward_flops`: convolutions and dense layers) x the images a step
  passes through it (labeled + weak + strong views: B + 2 U, U = mu B with
  --unlabeled_ratio), an estimate that counts the backward pass as twice the forward
  and leaves out batch norm, the EMA update and Local Clustering's distances (128-d
  features of B + U images);
- `gpu_hours_at`: the run's training FLOPs divided by each `--sustained_tflops`, a
  sustained rate that is an assumption, not a measurement of any GPU.

Prints a summary; `--output` writes the JSON with the commands and the software block.
"""

from __future__ import annotations

import os
import shlex
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_string("setting", "cifar10_fixmatch_4000", "a FixMatch flag file (name or path)")
flags.DEFINE_multi_string("set", [], "KEY=VALUE overrides, as `lcmt experiment --set`")
flags.DEFINE_integer("steps", 3, "timed training steps after one warm-up step")
flags.DEFINE_list(
    "sustained_tflops", ["10", "30", "100"], "assumed sustained TFLOP/s for the GPU column"
)
flags.DEFINE_string("output", "", "write the record as JSON here")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import keras

    from lcmt_tf.benchmark import forward_flops
    from lcmt_tf.builders import assign_full_weights, build_model, configure_backend
    from lcmt_tf.cli import fail
    from lcmt_tf.data.training_data import load_training_data
    from lcmt_tf.errors import UserInputError
    from lcmt_tf.experiments.runner import measure_step_seconds, override_args
    from lcmt_tf.files import atomic_write_json
    from lcmt_tf.flagfiles import PACKAGED_FLAGS_DIR, train_config
    from lcmt_tf.provenance import made_by

    try:
        extra = override_args(FLAGS.set)
        config = train_config([f"--flagfile={FLAGS.setting}", *extra])
        if config.method != "fixmatch":
            fail(f"--setting={FLAGS.setting} trains {config.method}, not fixmatch")
        dataset, _, _, batches = load_training_data(config)
    except UserInputError as error:
        fail(str(error))
    steps_per_epoch = len(batches)
    configure_backend(config)
    model = build_model(config, dataset, batches[0]["labeled_images"])
    assign_full_weights(model, config)
    flop_per_image = forward_flops(model.student)
    labeled = config.labeled_batch_size
    images_per_step = labeled + 2 * config.unlabeled_batch_size
    train_flop_per_step = 3.0 * flop_per_image * images_per_step
    cpu_s_per_step = measure_step_seconds(model, batches, FLAGS.steps)

    twin_name = os.path.join(PACKAGED_FLAGS_DIR, f"{os.path.basename(FLAGS.setting)}_lc.txt")
    runs = {"fixmatch": config.epochs * steps_per_epoch}
    if os.path.isfile(twin_name):
        twin = train_config([f"--flagfile={twin_name}", *extra])
        runs["fixmatch_lc_after_fork"] = (twin.epochs - twin.lc_start_epoch) * steps_per_epoch
    rates = [float(value) for value in FLAGS.sustained_tflops]
    projected = {
        name: {
            "steps": steps,
            "train_flop": steps * train_flop_per_step,
            "cpu_days_projected": steps * cpu_s_per_step / 86400,
            "gpu_hours_at": {
                f"{rate:g}_tflops": steps * train_flop_per_step / (rate * 1e12) / 3600
                for rate in rates
            },
        }
        for name, steps in runs.items()
    }
    record = {
        "what": "measured CPU step time of a FixMatch setting, projected to its run; "
        "FLOPs are an estimate, GPU hours assume the sustained rates named",
        "setting": FLAGS.setting,
        "backend": keras.backend.backend(),
        "model": config.model,
        "labeled_batch": labeled,
        "unlabeled_batch": config.unlabeled_batch_size,
        "images_per_step": images_per_step,
        "steps_per_epoch": steps_per_epoch,
        "timed_steps": FLAGS.steps,
        "cpu_s_per_step": cpu_s_per_step,
        "forward_flop_per_image": flop_per_image,
        "train_flop_per_step": train_flop_per_step,
        "cpu_achieved_tflops": train_flop_per_step / cpu_s_per_step / 1e12,
        "runs": projected,
        **made_by(shlex.join(["python", "benchmarks/fixmatch_compute.py", *sys.argv[1:]])),
    }
    print(
        f"{FLAGS.setting}: {images_per_step} images a step, {cpu_s_per_step:.2f} s a step "
        f"here ({record['cpu_achieved_tflops'] * 1e3:.1f} GFLOP/s achieved), "
        f"{train_flop_per_step / 1e12:.3f} TFLOP a step (estimate)"
    )
    for name, run in projected.items():
        gpu = ", ".join(f"{hours:.1f} h at {rate}" for rate, hours in run["gpu_hours_at"].items())
        print(
            f"  {name}: {run['steps']} steps, {run['train_flop']:.3g} FLOP, "
            f"{run['cpu_days_projected']:.0f} days on this CPU (projected); "
            f"GPU: {gpu} (assumed rates)"
        )
    if FLAGS.output:
        atomic_write_json(FLAGS.output, record)


if __name__ == "__main__":
    app.run(main)
