"""scripts/benchmark.py as a user runs it, on a tiny network and a few steps."""

import json
import os
import subprocess
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_benchmark(tmp_path, *args):
    """scripts/benchmark.py on the active backend; returns (completed process, records)."""
    output = tmp_path / "bench.json"
    backend = keras.backend.backend()
    completed = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "scripts", "benchmark.py"),
            f"--backend={backend}",
            *args,
            f"--output={output}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    written = json.loads(output.read_text())
    assert written["command"].startswith("lcmt benchmark ") and written["software"]["lcmt_tf"]
    return completed, written["records"]


@pytest.mark.slow
@pytest.mark.tensorflow_only  # four compilations; the next test runs the benchmark on JAX too
def test_benchmark_writes_one_record_per_configuration(tmp_path):
    """Modes x inputs (supervised, the remaining mode, is the next test's)."""
    backend = keras.backend.backend()
    completed, records = run_benchmark(
        tmp_path,
        "--modes=mt,mtlc",
        "--width=0.0625",
        "--steps=2",
        "--warmup_steps=1",
        "--repeats=2",
        "--inputs=synthetic,pipeline",
    )
    assert [(r["mode"], r["input"]) for r in records] == [
        (mode, source) for source in ("synthetic", "pipeline") for mode in ("mt", "mtlc")
    ]
    for record in records:
        for key in (
            "mode",
            "backend",
            "width",
            "mixed_precision",
            "jit_compile",
            "images_per_s",
            "step_time_ms",
            "lc_overhead_pct",
            "peak_memory_mb",
            "achieved_flop_per_s",
        ):
            assert key in record
        assert record["backend"] == backend and record["width"] == 0.0625
        assert record["images_per_s"] == pytest.approx(
            record["images_per_step"] / (record["step_time_ms"] / 1000), rel=0.01
        )
        assert (record["lc_overhead_pct"] is None) == (record["mode"] != "mtlc")
    assert "| mode | input |" in completed.stdout


@pytest.mark.slow_on_jax
def test_every_requested_step_is_timed_beyond_one_pass_of_the_pipeline(tmp_path):
    """The benchmark's pipeline holds 28 batches; 2 repeats of 16 steps must all run
    (here with the weight-normalized network; several steps per call, but on torch,
    whose trainer runs one)."""
    per_call = 1 if keras.backend.backend() == "torch" else 4
    _, (record,) = run_benchmark(
        tmp_path,
        "--model=conv_large_wn",
        "--width=0.03125",
        "--steps=16",
        "--warmup_steps=1",
        "--repeats=2",
        f"--steps_per_execution={per_call}",
        "--modes=supervised",
        "--inputs=pipeline",
    )
    assert record["steps_timed"] == 32 and record["steps_per_execution"] == per_call
    assert record["model"] == "conv_large_wn"
    assert len(record["step_times_ms"]) == 2


@pytest.mark.tensorflow_only  # a count over the model graph: backend-independent, checked once
def test_forward_flops_of_both_13_layer_convnets_match_a_hand_count():
    from lcmt_tf import conv_large, conv_large_wn
    from lcmt_tf.benchmark import forward_flops

    # 32x32: 3 convs (3->128, 128->128 x2); 16x16: 3 convs (128->256, 256->256 x2);
    # 8x8 -> 6x6 valid 3x3 (256->512); 1x1 512->256, 256->128; dense 128->10.
    expected = 2 * (
        32 * 32 * 9 * (3 * 128 + 128 * 128 * 2)
        + 16 * 16 * 9 * (128 * 256 + 256 * 256 * 2)
        + 6 * 6 * 9 * 256 * 512
        + 6 * 6 * (512 * 256 + 256 * 128)
        + 128 * 10
    )
    assert forward_flops(conv_large()) == expected
    assert forward_flops(conv_large_wn()) == expected
