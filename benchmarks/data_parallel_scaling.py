"""Data-parallel scaling on this machine: the same digits run on one device, mirrored
over N logical CPU devices, and as N multi-worker processes on localhost, on each
backend; training throughput from each run's results.json, written as JSON and a
Markdown table.

    python benchmarks/data_parallel_scaling.py --output=docs/results/data_parallel_cpu

The run is flags/digits.txt with --epochs (default 20); the throughput is
epochs x steps x global batch / wall_time_s (fit and the final evaluation, not the
process start-up), so it includes per-epoch evaluation and callbacks as a user's run
does. On a CPU the logical devices share the same cores: this measures the cost of
the data-parallel machinery, not a speed-up.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from lcmt_tf.launch import launch_local  # noqa: E402

flags.DEFINE_list("backends", ["tensorflow", "jax"], "Keras backends")
flags.DEFINE_list("modes", ["none", "mirrored", "multi_worker"], "--distribute values to run")
flags.DEFINE_integer("devices", 2, "logical devices (mirrored) and processes (multi_worker)")
flags.DEFINE_integer("epochs", 20, "digits epochs per run")
flags.DEFINE_integer("seed", 0, "--seed and --label_seed of every run")
flags.DEFINE_string("output", "", "write PATH.json and PATH.md")
FLAGS = flags.FLAGS


def digits_args(model_dir: str) -> list[str]:
    epochs = FLAGS.epochs
    return [
        "--flagfile=flags/digits.txt",
        f"--epochs={epochs}",
        f"--lc_start_epoch={epochs // 2}",
        f"--lr_decay_epochs={epochs // 4}",
        f"--eval_every={epochs}",
        f"--seed={FLAGS.seed}",
        f"--label_seed={FLAGS.seed}",
        "--verbose=0",
        f"--model_dir={model_dir}",
    ]


def run_once(backend: str, distribute: str, model_dir: str) -> dict:
    args = digits_args(model_dir) + [f"--distribute={distribute}"]
    environment = {"TF_CPP_MIN_LOG_LEVEL": "2"}
    options = dict(cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    start = time.time()
    if distribute == "multi_worker":
        processes = launch_local(backend, args, FLAGS.devices, env=environment, **options)
    else:
        if distribute == "mirrored":
            args.append(f"--num_cpu_devices={FLAGS.devices}")
        command = [sys.executable, "scripts/train.py", *args]
        processes = [
            subprocess.Popen(
                command, env={**os.environ, **environment, "KERAS_BACKEND": backend}, **options
            )
        ]
    errors = [process.communicate()[1] for process in processes]
    elapsed = time.time() - start
    for process, error in zip(processes, errors):
        if process.returncode:
            raise RuntimeError(f"{backend} {distribute} failed:\n{error[-3000:]}")
    with open(os.path.join(model_dir, "results.json")) as file:
        results = json.load(file)
    with open(os.path.join(model_dir, "dataset.json")) as file:
        dataset = json.load(file)
    config = results["config"]
    global_batch = config["labeled_batch_size"] + config["unlabeled_batch_size"]
    steps = results["num_unlabeled"] // config["unlabeled_batch_size"]
    images = results["epochs_run"] * steps * global_batch
    return {
        "backend": backend,
        "distribute": distribute,
        "replicas": results["replicas"],
        "processes": results["processes"],
        "epochs": results["epochs_run"],
        "global_batch": global_batch,
        "train_images_per_s": round(images / results["wall_time_s"], 1),
        "wall_time_s": results["wall_time_s"],
        "process_time_s": round(elapsed, 1),
        "teacher_test_error": results["teacher_test_error"],
        "dataset": dataset["dataset"],
    }


def markdown(records: list[dict]) -> str:
    lines = [
        "| backend | --distribute | replicas | processes | train images/s | fit + eval s | "
        "whole command s | teacher test error % |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r['backend']} | {r['distribute']} | {r['replicas']} | {r['processes']} | "
            f"{r['train_images_per_s']:.0f} | {r['wall_time_s']:.1f} | {r['process_time_s']:.1f} | "
            f"{r['teacher_test_error']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    records = []
    with tempfile.TemporaryDirectory() as scratch:
        for backend in FLAGS.backends:
            for distribute in FLAGS.modes:
                model_dir = os.path.join(scratch, f"{backend}_{distribute}")
                record = run_once(backend, distribute, model_dir)
                print(json.dumps(record), flush=True)
                records.append(record)
    table = markdown(records)
    print(table)
    if FLAGS.output:
        command = "python benchmarks/data_parallel_scaling.py " + " ".join(sys.argv[1:])
        with open(FLAGS.output + ".json", "w") as file:
            machine = f"{os.cpu_count()} CPU cores, {platform.machine()}, {platform.system()}"
            from lcmt_tf.provenance import software

            record = {"command": command, "machine": machine, "software": software()}
            json.dump({**record, "records": records}, file, indent=1)
        with open(FLAGS.output + ".md", "w") as file:
            file.write(table)


if __name__ == "__main__":
    app.run(main)
