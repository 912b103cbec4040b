r"""Stops of a JAX training at random moments: every one must exit with its signal's
status (130 for SIGINT, 143 for SIGTERM), never a crash, and the run, resumed after
each, must end where an uninterrupted run ends.

One digits run (`--flagfile=digits` at --width, --epochs long, --deterministic) is
started, stopped --stops times (SIGINT and SIGTERM in turn) after a seeded random
delay drawn from [--min_delay, --max_delay] seconds of its process's life (start-up,
compilation, training and evaluation all get hit), and resumed each time by the same
command; then it runs to the end, and an uninterrupted run of the same command is
trained beside it for the comparison.

    KERAS_BACKEND=jax python benchmarks/stop_loop.py --output=docs/results/jax_stop_loop.json
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

flags.DEFINE_integer("stops", 20, "how many times the run is stopped")
flags.DEFINE_integer("epochs", 12, "the run's length")
flags.DEFINE_float("width", 0.25, "digits_net width")
flags.DEFINE_float("min_delay", 5.0, "earliest stop, seconds after the process starts")
flags.DEFINE_float("max_delay", 45.0, "latest stop")
flags.DEFINE_integer("seed", 0, "seed of the delays")
flags.DEFINE_string("output", "", "write the record as JSON here")
FLAGS = flags.FLAGS


def command(model_dir: str) -> list[str]:
    return [
        sys.executable, "-m", "lcmt_tf.cli.train", "--flagfile=digits",
        f"--width={FLAGS.width}", f"--epochs={FLAGS.epochs}",
        f"--lc_start_epoch={FLAGS.epochs // 2}", f"--lr_decay_epochs={FLAGS.epochs // 4}",
        "--eval_every=2", "--deterministic", "--verbose=0", f"--model_dir={model_dir}",
    ]  # fmt: skip


def next_epoch(model_dir: str) -> int:
    try:
        with np.load(os.path.join(model_dir, "training_state.npz")) as archive:
            return int(archive["next_epoch"])
    except (OSError, KeyError):
        return 0


def main(argv):
    del argv
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax")}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    rng = random.Random(FLAGS.seed)
    records = []
    with tempfile.TemporaryDirectory() as scratch:
        stopped_dir = os.path.join(scratch, "stopped")
        for index in range(FLAGS.stops):
            number = (signal.SIGINT, signal.SIGTERM)[index % 2]
            delay = rng.uniform(FLAGS.min_delay, FLAGS.max_delay)
            before = next_epoch(stopped_dir)
            process = subprocess.Popen(
                command(stopped_dir), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            time.sleep(delay)
            finished_first = process.poll() is not None
            if not finished_first:
                process.send_signal(number)
            _, stderr = process.communicate(timeout=300)
            record = {
                "stop": index + 1,
                "signal": number.name,
                "delay_s": round(delay, 2),
                "exit_status": process.returncode,
                "expected": 0 if finished_first else 128 + number,
                "epoch_before": before,
                "epoch_after": next_epoch(stopped_dir),
                "crashed": "Segmentation fault" in stderr or process.returncode < 0,
            }
            records.append(record)
            print(json.dumps(record), flush=True)
            if finished_first:
                break
        final = subprocess.run(command(stopped_dir), env=env, capture_output=True, text=True)
        reference_dir = os.path.join(scratch, "reference")
        reference = subprocess.run(command(reference_dir), env=env, capture_output=True, text=True)
        assert final.returncode == 0 and reference.returncode == 0, final.stderr[-2000:]
        largest = 0.0
        with np.load(os.path.join(stopped_dir, "training_state.npz")) as stopped:
            with np.load(os.path.join(reference_dir, "training_state.npz")) as uninterrupted:
                for key in uninterrupted.files:
                    if key.startswith("variable/"):
                        difference = np.abs(
                            stopped[key].astype(np.float64) - uninterrupted[key]
                        ).max()
                        largest = max(largest, float(difference))
        with open(os.path.join(stopped_dir, "results.json")) as file:
            stopped_results = json.load(file)
        with open(os.path.join(reference_dir, "results.json")) as file:
            reference_results = json.load(file)

    from lcmt_tf.provenance import software

    summary = {
        "command": " ".join(command("DIR")[1:]),
        "settings": {
            name: FLAGS[name].value
            for name in ("stops", "epochs", "width", "min_delay", "max_delay", "seed")
        },
        "stops": len(records),
        "exits_as_expected": sum(r["exit_status"] == r["expected"] for r in records),
        "crashes": sum(r["crashed"] for r in records),
        "largest_state_difference_to_uninterrupted": largest,
        "teacher_test_error": {
            "stopped_and_resumed": stopped_results["teacher_test_error"],
            "uninterrupted": reference_results["teacher_test_error"],
        },
        "records": records,
        "software": software(),
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "records"}, indent=2))
    if FLAGS.output:
        with open(FLAGS.output, "w") as file:
            json.dump(summary, file, indent=2)
            file.write("\n")


if __name__ == "__main__":
    app.run(main)
