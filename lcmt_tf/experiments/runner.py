"""Many training runs: what they are, which are done, running the rest.

An experiment (a table, a sweep) is a list of `Run`s, each an ordinary run directory
with the train command's arguments, so every run resumes, and running the same
experiment again skips the finished runs and continues the others. A forked run
(`--fork_from`) waits for the run it starts from.

Configurations are resolved in this process, by the function the train command uses
(`lcmt_tf.flagfiles.train_config`); each run trains in a process of its own
(`python -m lcmt_tf.cli.train`, in the caller's working directory), so that runs are
isolated from each other and `parallel` of them can train at once.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import json
import logging
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

from lcmt_tf.config import TrainConfig
from lcmt_tf.errors import UserInputError
from lcmt_tf.flagfiles import PACKAGED_FLAGS_DIR, train_config
from lcmt_tf.launch import TRAIN_COMMAND
from lcmt_tf.run_dir.layout import HISTORY_FILE, RESULTS_FILE, STATE_FILE, saved_epoch

# The methods of a setting S and their flag files: S_supervised.txt (optional), S_mt.txt
# and S.txt, in the user's folders of flag files (`flags_dirs`) or else installed. A
# setting with an LC twin (S.txt and S_lc.txt, as digits_fixmatch) has S.txt in the
# role "mt" (the method without LC) and S_lc.txt in "mtlc" (with LC).
METHODS = ("supervised", "mt", "mtlc")
METHOD_NAMES = {"supervised": "supervised only", "mt": "Mean Teacher", "mtlc": "MT + LC"}
FIXMATCH_NAMES = {"supervised": "supervised only", "mt": "FixMatch", "mtlc": "FixMatch + LC"}
FLAG_FILE_SUFFIX = {"supervised": "_supervised", "mt": "_mt", "mtlc": ""}
TWIN_SUFFIX = {"supervised": "_supervised", "mt": "", "mtlc": "_lc"}


def method_name(role: str, results: Sequence[dict] = ()) -> str:
    """The name a table gives a role ("mt", "mtlc", "supervised"): its method's, from
    the configurations of its finished runs' results (Mean Teacher's without any)."""
    fixmatch = any(result.get("config", {}).get("method") == "fixmatch" for result in results)
    return (FIXMATCH_NAMES if fixmatch else METHOD_NAMES)[role]


MAX_SEEDS = 10_000


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of an experiment: the train command with `args`."""

    setting: str
    method: str  # one of METHODS
    seed: int
    model_dir: str
    args: tuple[str, ...]
    after: str | None = None  # model_dir of the run it forks from, which must finish first
    value: float | None = None  # a sweep's value of its parameter


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,2,5' and mixtures like '0-2,7' work too."""
    seeds: list[int] = []
    try:
        for part in filter(None, (part.strip() for part in text.split(","))):
            first, _, last = part.partition("-")
            count = int(last or first) - int(first) + 1
            if len(seeds) + count > MAX_SEEDS:
                raise UserInputError(
                    f"--seeds={text!r} names more than {MAX_SEEDS} seeds: a run each is "
                    "more than an experiment can hold"
                )
            seeds += range(int(first), int(last or first) + 1)
    except UserInputError:
        raise
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UserInputError(f"--seeds={text!r}: give distinct seeds >= 0, like 0-4 or 0,1,2")
    return seeds


def flag_file(setting: str, method: str, flags_dirs: Sequence[str] = ()) -> str:
    """S_supervised.txt, S_mt.txt or S.txt (S.txt or S_lc.txt for a setting with an LC
    twin), absolute, from the first of `flags_dirs` that has it, else from the
    installed flag files; the path in the last of these when none has it."""
    folders = [*flags_dirs, PACKAGED_FLAGS_DIR]
    twin = any(os.path.isfile(os.path.join(folder, f"{setting}_lc.txt")) for folder in folders)
    name = f"{setting}{(TWIN_SUFFIX if twin else FLAG_FILE_SUFFIX)[method]}.txt"
    for folder in folders:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.abspath(os.path.join(folder, name))
    return os.path.join(folders[0], name)


def flag_files(setting: str, methods: Sequence[str], flags_dirs: Sequence[str] = ()) -> dict:
    """{method: flag file} of a setting; a missing file is a UserInputError."""
    for folder in flags_dirs:
        if not os.path.isdir(folder):
            raise UserInputError(f"--flags_dir={folder} is not a folder")
    files = {method: flag_file(setting, method, flags_dirs) for method in methods}
    missing = [path for path in files.values() if not os.path.isfile(path)]
    if missing:
        searched = ", ".join([*flags_dirs, "the installed flag files"])
        raise UserInputError(
            f"setting {setting!r} needs the flag files "
            f"{', '.join(os.path.basename(path) for path in files.values())}; "
            f"{os.path.basename(missing[0])} is not in {searched}"
        )
    return files


def run_args(flagfile: str, extra: Sequence[str], seed: int, model_dir: str) -> list[str]:
    """train.py's arguments for one seed of a flag file (seed = label split)."""
    return [
        f"--flagfile={flagfile}",
        *extra,
        f"--seed={seed}",
        f"--label_seed={seed}",
        f"--model_dir={model_dir}",
        "--verbose=2",
    ]


def override_args(overrides: Sequence[str]) -> list[str]:
    """--set KEY=VALUE entries as train.py flags."""
    args = []
    for override in overrides:
        key, equals, value = override.partition("=")
        if not equals or not key.strip():
            raise UserInputError(f"--set={override!r} must look like KEY=VALUE, e.g. epochs=12")
        args.append(f"--{key.strip()}={value}")
    return args


def resolve(args: Sequence[str]) -> dict:
    """The configuration (as a dict) the train command resolves from `args`; a
    mistake in them is a UserInputError."""
    return train_config(args).to_dict()


def read_results(model_dir: str) -> dict | None:
    """A run's results.json, or None if it has none (yet), or a damaged one (with a
    warning: rerunning the run, which resumes at its end, writes it again)."""
    path = os.path.join(model_dir, RESULTS_FILE)
    try:
        with open(path) as file:
            return json.load(file)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        logging.warning("%s cannot be read (%s): the run counts as unfinished", path, error)
        return None


def read_history(model_dir: str) -> list[dict[str, float]]:
    """A run's history.csv: a dict per epoch (`epoch` 1-based), NaN where a value was
    not logged that epoch (test errors between evaluations); [] if there is none."""
    try:
        with open(os.path.join(model_dir, HISTORY_FILE), newline="") as file:
            rows = list(csv.DictReader(file))
    except OSError:
        return []
    return [
        {key: float(value) if value else math.nan for key, value in row.items()} for row in rows
    ]


def finished_results(runs: Sequence[Run]) -> dict[str, dict]:
    """{model_dir: results} of the runs that completed."""
    results = {run.model_dir: read_results(run.model_dir) for run in runs}
    return {key: value for key, value in results.items() if value and value.get("completed")}


def unfinished(runs: Sequence[Run], finished: dict[str, dict]) -> list[dict]:
    """The runs not in `finished`, with their status and why they stopped."""
    entries = []
    for run in runs:
        if run.model_dir not in finished:
            reason = (read_results(run.model_dir) or {}).get("stop_reason")
            entries.append({**identity(run), "status": status(run), "stop_reason": reason})
    return entries


def identity(run: Run) -> dict:
    """What names a run in a table: setting, method, seed (and a sweep's value)."""
    names = {"setting": run.setting, "method": run.method, "seed": run.seed}
    return names if run.value is None else {**names, "value": run.value}


def nan_to_none(value):
    """JSON has no NaN: a statistic that needs more seeds than there are is null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: nan_to_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [nan_to_none(item) for item in value]
    return value


def status(run: Run) -> str:
    """'finished' (completed), 'stopped' (a NaN loss or a collapse ended it: rerunning
    would stop again), 'unfinished' (started, not ended) or 'new'."""
    results = read_results(run.model_dir)
    if results is not None and results.get("completed"):
        return "finished"
    if results is not None and results.get("stop_reason"):
        return "stopped"
    return "unfinished" if os.path.isdir(run.model_dir) else "new"


def execute(
    runs: Sequence[Run], parallel: int = 1, report: Callable[[str], None] = print
) -> dict[str, int]:
    """Runs what is not finished, `parallel` at a time, each as a subprocess whose
    output goes to MODEL_DIR.log; a forked run waits for its source. Returns each
    run's exit status (0 for a run that was already finished).

    A KeyboardInterrupt in this thread (Ctrl-C, or SIGTERM turned into one by the
    command) is passed on to every run that is training (as the same signal: each
    stops after its last completed epoch), no new run starts, and once every run has
    ended the interrupt is raised again: no process outlives the call."""
    outcomes: dict[str, int] = {}
    done = {run.model_dir: threading.Event() for run in runs}
    lock = threading.Lock()
    running: dict[str, subprocess.Popen] = {}
    stopping = threading.Event()
    said = threading.Lock()

    def say(line: str) -> None:  # one whole line at a time from the worker threads
        with said:
            report(line)

    def one(run: Run) -> None:
        code = 1
        try:
            code = attempt(run)
        finally:
            with lock:
                outcomes[run.model_dir] = code
            done[run.model_dir].set()

    def attempt(run: Run) -> int:
        if run.after in done:
            done[run.after].wait()
            with lock:
                failed = outcomes.get(run.after) != 0
            if failed:
                if not stopping.is_set():
                    say(f"skip   {run.model_dir}: the run it forks from did not finish")
                return 1
        state = status(run)
        if state in ("finished", "stopped"):
            say(f"done   {run.model_dir} ({state} earlier)")
            return 0 if state == "finished" else 1
        with lock:
            if stopping.is_set():  # nothing of a run is made once the command is stopping
                return 1
            os.makedirs(os.path.dirname(run.model_dir) or ".", exist_ok=True)
            say(f"{'resume' if state == 'unfinished' else 'start '} {run.model_dir}")
            with open(f"{run.model_dir}.log", "a") as log:
                process = subprocess.Popen(
                    [*TRAIN_COMMAND, *run.args],
                    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            running[run.model_dir] = process
        code = process.wait()
        with lock:
            running.pop(run.model_dir, None)
        outcome = "end   " if code == 0 else "STOP  " if stopping.is_set() else "FAILED"
        say(f"{outcome} {run.model_dir} (exit {code}, log: {run.model_dir}.log)")
        return code

    # Mean Teacher runs are queued first, so a waiting fork never holds the worker its
    # source needs.
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = [pool.submit(one, run) for run in runs]
        try:
            for future in futures:
                future.result()
        except KeyboardInterrupt as interrupt:
            stopping.set()
            number = getattr(interrupt, "signal_number", signal.SIGINT)
            with lock:
                for process in running.values():
                    process.send_signal(number)
            concurrent.futures.wait(futures)
            raise
    return outcomes


def plan(runs: Sequence[Run], measure: Callable[[dict], float] | None = None) -> list[dict]:
    """Per run: its status, the epochs it has left, and its projected wall time, from
    the finished runs of the same kind (setting, method and sweep value: seconds per
    epoch they measured) or else from `measure(config)` (seconds per epoch;
    `measure_epoch_seconds`)."""

    def kind(run: Run) -> tuple:
        return run.setting, run.method, run.value

    # One resolution per kind: its seeds differ only in seed and model_dir.
    configs: dict[tuple, dict] = {}
    for run in runs:
        if kind(run) not in configs:
            configs[kind(run)] = resolve(run.args)
    measured: dict[tuple, float] = {}
    for run in runs:
        results = read_results(run.model_dir)
        trained = results and results["epochs_run"] - results["resumed_from_epoch"]
        if results and results.get("completed") and trained:
            measured.setdefault(kind(run), results["wall_time_s"] / trained)
    entries = []
    for run in runs:
        config, state = configs[kind(run)], status(run)
        start = config["lc_start_epoch"] if run.after else 0
        left = 0 if state in ("finished", "stopped") else config["epochs"] - start
        trained = saved_epoch(os.path.join(run.model_dir, STATE_FILE)) or 0
        left -= min(left, max(0, trained - start))
        if kind(run) not in measured and measure is not None and left:
            measured[kind(run)] = measure(config)
        seconds = measured.get(kind(run))
        entries.append(
            {
                **identity(run),
                "status": state,
                "epochs_left": left,
                "projected_s": None if seconds is None else left * seconds,
                "seconds_per_epoch": seconds,
            }
        )
    return entries


def measure_epoch_seconds(config: dict, steps: int = 3) -> float:
    """Seconds an epoch of this configuration takes here: the mean time of `steps`
    training steps after one warm-up step (compilation), times the steps of an epoch.
    Loads the data and builds the model as the run will."""
    from lcmt_tf.builders import assign_full_weights, build_model, configure_backend
    from lcmt_tf.data.training_data import load_training_data

    settings = TrainConfig.from_dict(config)
    dataset, _, _, batches = load_training_data(settings)
    configure_backend(settings)
    model = build_model(settings, dataset, batches[0]["labeled_images"])
    assign_full_weights(model, settings)
    return measure_step_seconds(model, batches, steps) * len(batches)


def measure_step_seconds(model, batches, steps: int = 3) -> float:
    """The mean time of `steps` training steps of a compiled `model` on `batches`,
    after one warm-up step (compilation)."""
    model.fit(batches, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
    start = time.perf_counter()
    model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    return (time.perf_counter() - start) / steps
