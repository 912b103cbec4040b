"""Steady-state training throughput of supervised, Mean Teacher and MT+LC steps.

    lcmt benchmark --backend=tensorflow --width=1.0 --steps=10 --output=bench.json
    KERAS_BACKEND=jax lcmt benchmark --backend=jax --mixed_precision=bfloat16
    KERAS_BACKEND=torch lcmt benchmark --backend=torch

What is timed and how: lcmt_tf/benchmark.py. Prints a line per configuration and a
Markdown table; `--output` writes a JSON list with one record per configuration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from absl import flags

from lcmt_tf import cli
from lcmt_tf.models import MODELS


def define_flags() -> None:
    flags.DEFINE_enum("backend", "tensorflow", ["tensorflow", "jax", "torch"], "Keras backend")
    flags.DEFINE_enum("model", "conv_large", list(MODELS), "network")
    flags.DEFINE_float("width", 1.0, "channel multiplier of the network")
    flags.DEFINE_enum(
        "forward_passes", "joint", ["joint", "separate"], "passes per network and step"
    )
    flags.DEFINE_enum("mixed_precision", "", ["", "bfloat16", "float16"], "compute dtype")
    flags.DEFINE_boolean("jit_compile", False, "XLA-compile the step (JAX always compiles)")
    flags.DEFINE_integer("steps", 20, "steps per timed repeat")
    flags.DEFINE_integer("steps_per_execution", 1, "steps per call of the compiled train function")
    flags.DEFINE_integer("warmup_steps", 3, "untimed steps first (tracing, compilation)")
    flags.DEFINE_integer("repeats", 3, "timed repeats; the median is reported")
    flags.DEFINE_list("modes", ["supervised", "mt", "mtlc"], "supervised, mt, mtlc")
    flags.DEFINE_list("inputs", ["synthetic"], "synthetic and/or pipeline")
    flags.DEFINE_string("output", "", "write the records as JSON here")
    flags.DEFINE_float(
        "peak_flops", 0.0, "device peak FLOP/s for the utilization column (0 = unknown)"
    )
    flags.DEFINE_boolean("lc_only", False, "time Local Clustering alone against --batch_sizes")
    flags.DEFINE_list("batch_sizes", ["160", "1024", "4096", "8192"], "--lc_only: global batches")
    flags.DEFINE_float("labeled_share", 0.125, "--lc_only: share of each batch that is labeled")
    flags.DEFINE_enum("lc_distance", "auto", ["auto", "difference", "matmul"], "--lc_only: method")


FLAGS = flags.FLAGS


def run_benchmark(argv: list[str]) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    if os.environ.get("KERAS_BACKEND", FLAGS.backend) != FLAGS.backend:
        cli.fail(f"KERAS_BACKEND={os.environ['KERAS_BACKEND']} but --backend={FLAGS.backend}")
    os.environ["KERAS_BACKEND"] = FLAGS.backend
    if FLAGS.lc_only:
        return lc_only()
    from lcmt_tf import benchmark
    from lcmt_tf.steps import backend_refusal

    records = []
    for source in FLAGS.inputs:
        for mode in FLAGS.modes:
            config = benchmark.benchmark_config(
                mode,
                model=FLAGS.model,
                forward_passes=FLAGS.forward_passes,
                width=FLAGS.width,
                mixed_precision=FLAGS.mixed_precision,
                jit_compile=FLAGS.jit_compile,
                steps_per_execution=FLAGS.steps_per_execution,
            )
            refusal = backend_refusal(config, FLAGS.backend)
            if refusal:
                cli.fail(refusal)
            record = benchmark.time_configuration(
                mode,
                source,
                config,
                steps=FLAGS.steps,
                warmup_steps=FLAGS.warmup_steps,
                repeats=FLAGS.repeats,
                peak_flops=FLAGS.peak_flops,
            )
            records.append(record)
            print(
                f"{mode:10s} {source:9s} {record['step_time_ms']:9.1f} ms/step "
                f"{record['images_per_s']:9.1f} images/s",
                flush=True,
            )
    benchmark.add_lc_overhead(records)
    print("\n" + benchmark.markdown_table(records))
    write_output(records)


def write_output(records: list) -> None:
    """--output: the records, with the command and the software that measured them."""
    if not FLAGS.output:
        return
    import shlex

    from lcmt_tf.provenance import made_by

    command = shlex.join(["lcmt", "benchmark", *sys.argv[1:]])
    with open(FLAGS.output, "w") as file:
        json.dump({**made_by(command), "records": records}, file, indent=2)


def lc_only():
    """Each batch size in a fresh process (peak memory is per process); a size that
    runs out of memory or time is recorded as failed."""
    if len(FLAGS.batch_sizes) == 1:
        from lcmt_tf import benchmark

        size = int(FLAGS.batch_sizes[0])
        labeled = int(round(size * FLAGS.labeled_share))
        record = benchmark.time_local_clustering(
            labeled, size - labeled, repeats=FLAGS.repeats, method=FLAGS.lc_distance
        )
        print(json.dumps(record))
        return
    records = []
    for size in FLAGS.batch_sizes:
        args = [arg for arg in sys.argv[1:] if not arg.startswith(("--batch_sizes", "--output"))]
        completed = subprocess.run(
            [sys.executable, "-m", "lcmt_tf.cli.benchmark", *args, f"--batch_sizes={size}"],
            capture_output=True,
            text=True,
        )
        if completed.returncode == 0:
            record = json.loads(completed.stdout.strip().splitlines()[-1])
        else:
            reason = (completed.stderr.strip().splitlines() or ["no output"])[-1][:200]
            record = {"batch_size": int(size), "method": FLAGS.lc_distance, "failed": reason}
        record["batch_size"] = int(size)
        records.append(record)
        shown = (
            f"{record['step_time_ms']:9.1f} ms  {record['peak_memory_mb']:9.1f} MB"
            if "failed" not in record
            else f"failed (exit {completed.returncode}): {record['failed']}"
        )
        print(f"batch {int(size):6d} ({FLAGS.lc_distance}): {shown}", flush=True)
    write_output(records)


def main() -> None:
    cli.run(run_benchmark, define_flags, __doc__)


if __name__ == "__main__":
    main()
