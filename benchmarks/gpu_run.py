r"""One prepared GPU session: the step's speed, then a short paired CIFAR-10 run, within a
wall-time budget, each result written to OUT as soon as it is known.

A lent GPU machine has JAX with CUDA and no TensorFlow, and a few minutes of device time
in all, so everything runs on Keras' JAX backend, in this order:

1. OUT/gpu_run.json gets the device (nvidia-smi, JAX's devices) and the software.
2. `lcmt benchmark` (JAX, bfloat16, conv_large at --width, the paper's batch of 32 + 128):
   Mean Teacher and MT+LC, --steps_per_execution 1 and 10, synthetic and pipeline
   inputs; images/s, achieved FLOP/s against --peak_flops, LC overhead, peak memory.
   Each call has its own share of the budget; one that runs out is
   recorded as such and the next starts.
3. With the time left: Mean Teacher on CIFAR-10 (4,000 labels, seed 0), then MT+LC
   forked from it at the LC start, on the paper's schedule (flags cifar10_4000_mt and
   cifar10_4000) scaled by one factor so that both fit the time left (measured step
   time, or --scale). A run still going at its deadline is stopped with SIGINT (its last
   completed epoch stays, resumable: rerun the same command) and recorded as stopped.

    # here: wheels and data into git-ignored folders (see benchmarks/gpu_prepare.sh)
    bash benchmarks/gpu_prepare.sh
    # there (the device tool's run, carry [".whl", ".data"]):
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \
      PYTHONPATH=/tmp/site:$PWD python3 benchmarks/gpu_run.py --out=$OUT \
      --dataset=packed:.data/cifar10_jpeg.npz 2>&1 | tee $OUT/gpu_run.log
    # the CPU dry run (tests/test_gpu_run.py): --model=digits_net, a short budget, small data

Only gpu_run.json (and the caller's log) go to OUT: the device tool brings back at most
8 files. Run directories stay in --runs_dir on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from absl import app, flags

flags.DEFINE_string("out", os.environ.get("OUT", "gpu_run_out"), "folder for gpu_run.json")
flags.DEFINE_float("budget_s", 540.0, "wall time for everything, in seconds")
flags.DEFINE_float("width", 1.0, "channel multiplier of the network (1.0: the paper's)")
flags.DEFINE_string(
    "model",
    "",
    "network of every stage ('': conv_large in the benchmark, the flag files' conv_large_wn "
    "in the paired run); the CPU dry run passes a small one",
)
flags.DEFINE_string(
    "dataset",
    "folder:../shared/data/cifar10",
    "the CIFAR-10 JPEG copy: folder:PATH, or packed:FILE (made by --pack)",
)
flags.DEFINE_string("pack", "", "pack this image folder into OUT/cifar10_jpeg.npz, and exit")
flags.DEFINE_string("mixed_precision", "bfloat16", "compute dtype of every step")
flags.DEFINE_integer("bench_steps", 50, "timed steps per repeat of each benchmark")
flags.DEFINE_integer("bench_repeats", 3, "timed repeats of each benchmark (median reported)")
flags.DEFINE_integer("bench_warmup", 5, "untimed steps of each benchmark (compilation)")
flags.DEFINE_float(
    "peak_flops", 989e12, "the device's dense bf16 peak FLOP/s (H100/H200 SXM datasheet)"
)
flags.DEFINE_float("bench_share", 0.4, "share of the budget the benchmark may use")
flags.DEFINE_list(
    "bench_modes", ["mt", "mtlc"], "benchmark modes (mt, mtlc; both give LC overhead)"
)
flags.DEFINE_list(
    "bench_steps_per_execution", ["1", "10"], "benchmark: each value with each input, a call each"
)
flags.DEFINE_float("bench_reserve_s", 10.0, "benchmark: what each later call keeps of the share")
flags.DEFINE_float("scale", 0.0, "schedule scale of the paired run (0: fit the time left)")
flags.DEFINE_float("overhead_s", 90.0, "paired run: start-up, data and compilation allowance")
flags.DEFINE_list("train_args", [], "more train flags for both runs, e.g. --num_labels=100")
flags.DEFINE_string("runs_dir", os.path.join(tempfile.gettempdir(), "lcmt_gpu_runs"), "runs")
FLAGS = flags.FLAGS

# The paper's CIFAR-10 4000 schedule (flags cifar10_4000_mt.txt and cifar10_4000.txt).
PAPER_SCHEDULE = {
    "mt_epochs": 1000,
    "mtlc_epochs": 1200,
    "lr_decay_epochs": 200,
    "lc_start_epoch": 600,
    "lc_rampup_epochs": 100,
    "consistency_rampup_epochs": 5,
}
LABELED, UNLABELED = 32, 128


class Budget:
    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


class Record:
    """gpu_run.json, rewritten whole (atomically) after every result."""

    def __init__(self, path: str):
        self.path, self.value = path, {"stages": {}}

    def set(self, key: str, value) -> None:
        self.value["stages"][key] = value
        temporary = self.path + ".tmp"
        with open(temporary, "w") as file:
            json.dump(self.value, file, indent=2, sort_keys=True)
        os.replace(temporary, self.path)
        print(f"== gpu_run: {key} written", flush=True)


def run_until(command: list[str], seconds: float, log_path: str, env: dict | None = None) -> dict:
    """Runs `command` for at most `seconds`, then SIGINT (a training saves nothing more
    but keeps its last epoch), then SIGKILL after 60 s. Returns its exit status, wall
    time and whether it was stopped."""
    start = time.monotonic()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        stopped = False
        try:
            code = process.wait(timeout=max(1.0, seconds))
        except subprocess.TimeoutExpired:
            stopped = True
            process.send_signal(signal.SIGINT)
            try:
                code = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
    with open(log_path) as log:
        tail = log.read().splitlines()[-15:]
    return {
        "command": command,
        "exit_status": code,
        "stopped_at_budget": stopped,
        "wall_s": round(time.monotonic() - start, 1),
        "log_tail": tail,
    }


def environment() -> dict:
    """nvidia-smi's view of the device, and the software and devices JAX sees (in a
    child process, so that this one never takes the GPU)."""
    smi = shutil.which("nvidia-smi")
    device = None
    if smi:
        query = "name,memory.total,driver_version,clocks.max.sm,power.limit"
        completed = subprocess.run(
            [smi, f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True, text=True
        )
        device = completed.stdout.strip() or completed.stderr.strip()
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, jax; from lcmt_tf.provenance import software; "
            "print(json.dumps({'software': software(), 'jax_devices': "
            "[str(d) for d in jax.devices()]}))",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    lines = probe.stdout.strip().splitlines()
    found = json.loads(lines[-1]) if probe.returncode == 0 and lines else {"error": probe.stderr}
    return {"nvidia_smi": device, **found}


def benchmarks(record: Record, budget: Budget, scratch: str) -> list[dict]:
    """The benchmark calls (each --bench_steps_per_execution with synthetic and pipeline
    inputs), each within its share of the benchmark's budget."""
    calls = [
        (int(spe), source)
        for spe in FLAGS.bench_steps_per_execution
        for source in ("synthetic", "pipeline")
    ]
    stage = Budget(budget.left() * FLAGS.bench_share)
    results, records = [], []
    for position, (steps_per_execution, source) in enumerate(calls):
        # A call may use what is left but a reserve for each later one (the first call
        # compiles; later ones can hit the compilation cache).
        share = max(stage.left() - (len(calls) - position - 1) * FLAGS.bench_reserve_s, 1.0)
        output = os.path.join(scratch, f"bench_{steps_per_execution}_{source}.json")
        steps = max(FLAGS.bench_steps // steps_per_execution, 1) * steps_per_execution
        command = [
            sys.executable, "-m", "lcmt_tf.cli.benchmark", "--backend=jax",
            f"--mixed_precision={FLAGS.mixed_precision}", f"--model={FLAGS.model or 'conv_large'}",
            f"--width={FLAGS.width}", f"--modes={','.join(FLAGS.bench_modes)}",
            f"--inputs={source}",
            f"--steps_per_execution={steps_per_execution}", f"--steps={steps}",
            f"--warmup_steps={max(FLAGS.bench_warmup, steps_per_execution)}",
            f"--repeats={FLAGS.bench_repeats}", f"--peak_flops={FLAGS.peak_flops}",
            f"--output={output}",
        ]  # fmt: skip
        outcome = run_until(
            command, min(share, budget.left()), output + ".log", {"KERAS_BACKEND": "jax"}
        )
        if os.path.exists(output):
            with open(output) as file:
                outcome["records"] = json.load(file)["records"]
            records += outcome["records"]
        results.append(outcome)
        record.set("benchmark", results)
    return records


def paper_epoch_seconds(records: list[dict]) -> float | None:
    """Seconds of one CIFAR-10 epoch of MT+LC (46,000 unlabeled images: 360 steps),
    from the fastest measured MT+LC step on the real pipeline (else any MT+LC step)."""
    mtlc = [r for r in records if r.get("mode") == "mtlc" and r.get("step_time_ms")]
    pipeline = [r for r in mtlc if r.get("input") == "pipeline"] or mtlc
    if not pipeline:
        return None
    step_ms = min(r["step_time_ms"] for r in pipeline)
    return -(-46000 // UNLABELED) * step_ms / 1000.0


def scaled_schedule(scale: float) -> dict:
    """The paper's schedule, every length times `scale` (at least 1 epoch each)."""
    schedule = {key: max(1, round(value * scale)) for key, value in PAPER_SCHEDULE.items()}
    # Keep the protocol's order: LC starts before Mean Teacher decays its learning rate.
    schedule["mt_epochs"] = max(
        schedule["mt_epochs"], schedule["lc_start_epoch"] + schedule["lr_decay_epochs"]
    )
    schedule["mtlc_epochs"] = max(
        schedule["mtlc_epochs"], schedule["lc_start_epoch"] + schedule["lr_decay_epochs"]
    )
    schedule["scale"] = scale
    return schedule


def pack_folder(folder: str, output: str) -> None:
    """Every file under `folder` (its bytes, undecoded) in one .npz: the files' relative
    paths and their bytes, concatenated, with offsets."""
    import numpy as np

    paths = sorted(
        os.path.relpath(os.path.join(root, name), folder)
        for root, _, names in os.walk(folder)
        for name in names
    )
    contents = []
    for path in paths:
        with open(os.path.join(folder, path), "rb") as file:
            contents.append(np.frombuffer(file.read(), np.uint8))
    offsets = np.cumsum([0] + [len(content) for content in contents])
    np.savez(
        output, paths=np.array(paths, dtype="S"), offsets=offsets, data=np.concatenate(contents)
    )


def unpack_folder(packed: str, folder: str) -> None:
    import numpy as np

    with np.load(packed) as archive:
        paths, offsets, data = archive["paths"], archive["offsets"], archive["data"]
    for index, path in enumerate(paths):
        target = os.path.join(folder, path.decode())
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as file:
            file.write(data[offsets[index] : offsets[index + 1]].tobytes())


def dataset_path(scratch: str) -> str:
    """folder:PATH as given, or a packed:FILE unpacked into the scratch folder."""
    kind, _, path = FLAGS.dataset.partition(":")
    if kind == "folder":
        return path
    if kind != "packed":
        raise SystemExit(
            f"gpu_run.py: error: --dataset={FLAGS.dataset}: folder:PATH or packed:FILE"
        )
    target = os.path.join(scratch, "data")
    unpack_folder(path, target)
    return target


def paired_run(record: Record, budget: Budget, records: list[dict], scratch: str) -> None:
    epoch_s = paper_epoch_seconds(records)
    available = budget.left() - FLAGS.overhead_s
    if FLAGS.scale:
        scale = FLAGS.scale
    elif epoch_s and available > 0:
        trained = PAPER_SCHEDULE["mt_epochs"] + (
            PAPER_SCHEDULE["mtlc_epochs"] - PAPER_SCHEDULE["lc_start_epoch"]
        )
        scale = min(1.0, available / (trained * epoch_s))
    else:
        scale = 0.01
    schedule = scaled_schedule(scale)
    data = dataset_path(scratch)
    mt_dir, mtlc_dir = (os.path.join(FLAGS.runs_dir, name) for name in ("mt", "mtlc"))
    common = [
        f"--dataset=folder:{data}", "--seed=0", "--label_seed=0", "--verbose=2",
        f"--mixed_precision={FLAGS.mixed_precision}", f"--width={FLAGS.width}",
        f"--lr_decay_epochs={schedule['lr_decay_epochs']}",
        f"--consistency_rampup_epochs={schedule['consistency_rampup_epochs']}",
        f"--eval_every={max(1, schedule['mt_epochs'] // 10)}", *FLAGS.train_args,
        *([f"--model={FLAGS.model}"] if FLAGS.model else []),
    ]  # fmt: skip
    train = [sys.executable, "-m", "lcmt_tf.cli.train"]
    mt = [
        *train, "--flagfile=cifar10_4000_mt", *common, f"--epochs={schedule['mt_epochs']}",
        f"--keep_epochs={schedule['lc_start_epoch']}", f"--model_dir={mt_dir}",
    ]  # fmt: skip
    mtlc = [
        *train, "--flagfile=cifar10_4000", *common, f"--epochs={schedule['mtlc_epochs']}",
        f"--lc_start_epoch={schedule['lc_start_epoch']}",
        f"--lc_rampup_epochs={schedule['lc_rampup_epochs']}", f"--fork_from={mt_dir}",
        f"--model_dir={mtlc_dir}",
    ]  # fmt: skip
    entry = {
        "schedule": schedule,
        "estimated_epoch_s": epoch_s,
        "paper_schedule": PAPER_SCHEDULE,
        "note": "a shortened schedule: every length of the paper's is multiplied by scale",
    }
    record.set("paired_cifar10", entry)
    mt_trained = schedule["mt_epochs"]
    lc_trained = schedule["mtlc_epochs"] - schedule["lc_start_epoch"]
    mt_share = mt_trained / (mt_trained + lc_trained)
    env = {"KERAS_BACKEND": "jax"}
    # Mean Teacher gets its share of what is left; the fork all the rest.
    entry["mt"] = run_until(
        mt, max(1.0, budget.left() * mt_share), os.path.join(scratch, "mt.log"), env
    )
    entry["mt"]["results"] = read_json(os.path.join(mt_dir, "results.json"))
    record.set("paired_cifar10", entry)
    if budget.left() > 20:
        entry["mtlc"] = run_until(mtlc, budget.left() - 5, os.path.join(scratch, "mtlc.log"), env)
        entry["mtlc"]["results"] = read_json(os.path.join(mtlc_dir, "results.json"))
    else:
        entry["mtlc"] = {"skipped": "no time left in the budget"}
    entry["resume"] = "rerun the same gpu_run.py command: both runs resume from their last epoch"
    record.set("paired_cifar10", entry)


def read_json(path: str):
    try:
        with open(path) as file:
            return json.load(file)
    except (OSError, ValueError):
        return None


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.pack:
        os.makedirs(FLAGS.out, exist_ok=True)
        pack_folder(FLAGS.pack, os.path.join(FLAGS.out, "cifar10_jpeg.npz"))
        return
    start = time.monotonic()
    budget = Budget(FLAGS.budget_s)
    os.makedirs(FLAGS.out, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="gpu_run_")
    record = Record(os.path.join(FLAGS.out, "gpu_run.json"))
    record.value["settings"] = {name: FLAGS[name].value for name in FLAGS if name in {
        "budget_s", "width", "model", "dataset", "mixed_precision", "bench_steps", "bench_repeats",
        "peak_flops", "scale", "train_args"}}  # fmt: skip
    record.set("environment", environment())
    records = benchmarks(record, budget, scratch)
    paired_run(record, budget, records, scratch)
    record.value["wall_s"] = round(time.monotonic() - start, 1)
    record.set("done", True)


if __name__ == "__main__":
    app.run(main)
