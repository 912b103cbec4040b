"""Honest tuning of Local Clustering's settings: search on a validation split, then
confirm the chosen setting on fresh seeds against Mean Teacher, on the test set.

1. **Search.** Every trial trains MT+LC of a setting S with the trial's values, for
   each of the tuning seeds (forked from that seed's Mean Teacher run at the LC start
   with `fork`). Its objective is the mean final teacher error on the runs' held-out
   validation split (`--validation_fraction`); a configuration without one is
   refused, and the search never reads a test error. Optuna proposes the values
   (TPE, seeded) through its ask-and-tell interface, so that every trial is an
   ordinary resumable run directory, and keeps the study in SQLite, so that the
   search resumes too. A tie on the validation error goes to the smallest
   `lc_weight`, then to the earliest trial (`choose`).
2. **Confirmation.** Mean Teacher and MT+LC with the chosen values, on fresh seeds
   (disjoint from the tuning seeds), as `table` trains them: the final test errors,
   and the paired MT+LC - MT difference with its 95 % interval.

Optuna rather than KerasTuner: a KerasTuner trial is a `fit` its tuner runs itself,
while a trial here is a whole run (forked, resumable, in its own process), which
Optuna's ask-and-tell interface leaves to the caller.

Layout under ROOT/S/tune/: mt/seed_J (the tuning seeds' Mean Teacher runs),
trial_K/seed_J, confirm/{mt,mtlc}/seed_J, study.db, tune.json and tune.md.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Sequence

from lcmt_tf.config import TrainConfig
from lcmt_tf.errors import MissingExtraError, UserInputError
from lcmt_tf.experiments.runner import (
    Run,
    execute,
    flag_files,
    method_name,
    nan_to_none,
    override_args,
    read_results,
    resolve,
    run_args,
)
from lcmt_tf.experiments.statistics import mean_std, paired_difference
from lcmt_tf.files import atomic_write_json, atomic_write_text
from lcmt_tf.provenance import made_by_markdown
from lcmt_tf.run_dir.fork import MAY_DIFFER_AFTER_FORK

# Validation errors this close are a tie (errors are in percent of a finite split).
TIE = 1e-9

# What a trial is judged on. Never a test error: see the module docstring.
OBJECTIVE = "teacher_validation_error"
KINDS = ("float", "log", "int", "choice")
SAMPLER_SEED = 0


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One tuned flag: `name` (a TrainConfig field) and its range, from
    `--space=NAME=KIND:SPEC`: float:LOW:HIGH, log:LOW:HIGH (log-uniform), int:LOW:HIGH
    or choice:A|B|C."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[str, ...] = ()

    def distribution(self):
        import optuna

        if self.kind == "choice":
            return optuna.distributions.CategoricalDistribution(self.choices)
        if self.kind == "int":
            return optuna.distributions.IntDistribution(int(self.low), int(self.high))
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.kind == "log")


def parse_space(entries: Sequence[str]) -> list[Dimension]:
    """--space entries as Dimensions; a malformed one is a UserInputError."""
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    dimensions = []
    for entry in entries:
        name, equals, spec = entry.partition("=")
        kind, _, rest = spec.partition(":")
        usage = (
            f"--space={entry!r}: give NAME=float:LOW:HIGH, NAME=log:LOW:HIGH, NAME=int:LOW:HIGH "
            "or NAME=choice:A|B|C, e.g. lc_weight=log:1:30"
        )
        if not equals or kind not in KINDS or not rest:
            raise UserInputError(usage)
        if name not in fields:
            raise UserInputError(f"--space={entry!r}: {name!r} is not a training flag")
        if kind == "choice":
            dimensions.append(Dimension(name, kind, choices=tuple(rest.split("|"))))
            continue
        try:
            low, high = (float(value) for value in rest.split(":"))
        except ValueError:
            raise UserInputError(usage) from None
        if not low < high or (kind == "log" and low <= 0):
            raise UserInputError(f"--space={entry!r}: need LOW < HIGH (and LOW > 0 for log)")
        dimensions.append(Dimension(name, kind, low, high))
    if not dimensions:
        raise UserInputError("--space is empty: name at least one flag, e.g. lc_weight=log:1:30")
    return dimensions


def value_args(params: dict) -> list[str]:
    """A trial's values as train flags."""
    return [f"--{name}={value}" for name, value in sorted(params.items())]


@dataclasses.dataclass
class TuningPlan:
    """What a tuning experiment trains: every name it needs, checked up front."""

    setting: str
    root: str
    files: dict
    extra: list[str]
    space: list[Dimension]
    tune_seeds: list[int]
    seeds: list[int]
    fork: bool
    start_epochs: list[int]

    @property
    def folder(self) -> str:
        return os.path.join(self.root, self.setting, "tune")

    def mean_teacher_run(self, seed: int, folder: str, keep: Sequence[int]) -> Run:
        model_dir = os.path.join(folder, "mt", f"seed_{seed}")
        args = run_args(self.files["mt"], self.extra, seed, model_dir)
        if self.fork:
            args.append(f"--keep_epochs={','.join(map(str, keep))}")
        return Run(self.setting, "mt", seed, model_dir, tuple(args))

    def lc_run(self, seed: int, model_dir: str, params: dict, mean_teacher: Run) -> Run:
        args = [*run_args(self.files["mtlc"], self.extra, seed, model_dir), *value_args(params)]
        after = None
        if self.fork:
            after = mean_teacher.model_dir
            args.append(f"--fork_from={after}")
        return Run(self.setting, "mtlc", seed, model_dir, tuple(args), after)

    def trial_runs(self, number: int, params: dict) -> list[Run]:
        runs = []
        for seed in self.tune_seeds:
            source = self.mean_teacher_run(seed, self.folder, self.start_epochs)
            model_dir = os.path.join(self.folder, f"trial_{number}", f"seed_{seed}")
            runs.append(self.lc_run(seed, model_dir, params, source))
        return runs

    def tuning_mean_teacher_runs(self) -> list[Run]:
        return [
            self.mean_teacher_run(seed, self.folder, self.start_epochs) for seed in self.tune_seeds
        ]

    def confirmation_runs(self, params: dict) -> list[Run]:
        folder = os.path.join(self.folder, "confirm")
        start = int(params.get("lc_start_epoch", self.start_epochs[0]))
        runs = []
        for seed in self.seeds:
            mean_teacher = self.mean_teacher_run(seed, folder, [start])
            model_dir = os.path.join(folder, "mtlc", f"seed_{seed}")
            runs += [mean_teacher, self.lc_run(seed, model_dir, params, mean_teacher)]
        return sorted(runs, key=lambda run: run.method != "mt")  # sources first


def plan_tuning(
    setting: str,
    root: str,
    space: list[Dimension],
    tune_seeds: Sequence[int],
    seeds: Sequence[int],
    overrides: Sequence[str] = (),
    fork: bool = False,
    flags_dirs: Sequence[str] = (),
) -> TuningPlan:
    """Checks everything before any run: the flag files, the validation split, the
    seeds, and every value of the space against the configuration."""
    if set(tune_seeds) & set(seeds):
        raise UserInputError(
            f"--seeds and --tune_seeds share {sorted(set(tune_seeds) & set(seeds))}: the "
            "confirmation must use fresh seeds, not those the setting was chosen on"
        )
    files = flag_files(setting, ("mt", "mtlc"), flags_dirs)
    extra = override_args(overrides)
    mean_teacher = resolve([f"--flagfile={files['mt']}", *extra])
    if not mean_teacher["validation_fraction"]:
        raise UserInputError(
            "tune chooses on a validation split, never on the test set: hold one out with "
            "--set=validation_fraction=F (e.g. 0.2)"
        )
    start_epochs = [resolve([f"--flagfile={files['mtlc']}", *extra])["lc_start_epoch"]]
    for dimension in space:
        if fork and dimension.name not in MAY_DIFFER_AFTER_FORK:
            raise UserInputError(
                f"--fork: --space={dimension.name} changes the epochs before the fork; tune "
                "Local Clustering's settings only, or drop --fork"
            )
        if dimension.name == "lc_start_epoch":
            if fork and dimension.kind != "choice":
                raise UserInputError(
                    "--fork: give lc_start_epoch as choice:E1|E2|... (each Mean Teacher run "
                    "keeps its state at every candidate epoch)"
                )
            start_epochs = sorted({int(choice) for choice in dimension.choices}) or start_epochs
        samples = dimension.choices or (dimension.low, dimension.high)
        for value in samples:
            if dimension.kind == "int":
                value = int(value)
            resolve([f"--flagfile={files['mtlc']}", *extra, f"--{dimension.name}={value}"])
    return TuningPlan(
        setting, root, files, extra, space, list(tune_seeds), list(seeds), fork, start_epochs
    )


def objective(results: Sequence[dict | None]) -> float | None:
    """A trial's value: the mean final teacher validation error of its runs, or None
    when one of them did not complete. It reads OBJECTIVE only."""
    if not results or any(not result or not result.get("completed") for result in results):
        return None
    values = [result[OBJECTIVE] for result in results]
    if any(value is None or not math.isfinite(value) for value in values):
        return None
    return float(sum(values) / len(values))


def study_of(plan: TuningPlan):
    """The Optuna study of `plan`, created or resumed from ROOT/S/tune/study.db."""
    try:
        import optuna
    except ImportError:
        raise MissingExtraError(
            "experiment tune needs optuna: pip install 'lcmt_tf[experiments]'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.makedirs(plan.folder, exist_ok=True)
    return optuna.create_study(
        study_name=plan.setting,
        storage=f"sqlite:///{os.path.abspath(os.path.join(plan.folder, 'study.db'))}",
        load_if_exists=True,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=SAMPLER_SEED),
    )


def search(
    plan: TuningPlan,
    trials: int,
    parallel: int = 1,
    run: Callable[[Sequence[Run], int], object] = execute,
) -> dict:
    """Runs the search until `trials` trials are complete (trials a stopped search left
    running are trained on first, with their values); returns the best trial's
    {"number", "params", "value"}. `run(runs, parallel)` trains runs (runner.execute)."""
    import optuna

    study = study_of(plan)
    distributions = {dimension.name: dimension.distribution() for dimension in plan.space}
    sources = plan.tuning_mean_teacher_runs()
    run(sources, parallel)
    unfinished = [
        r.model_dir for r in sources if not (read_results(r.model_dir) or {}).get("completed")
    ]
    if unfinished:
        raise UserInputError(
            f"the tuning seeds' Mean Teacher run {unfinished[0]} did not finish (its log: "
            f"{unfinished[0]}.log); no trial can start from it"
        )
    while True:
        states = [trial.state for trial in study.trials]
        complete = states.count(optuna.trial.TrialState.COMPLETE)
        if complete >= trials:
            break
        batch = [
            (trial.number, trial.params)
            for trial in study.trials
            if trial.state == optuna.trial.TrialState.RUNNING
        ]
        if not batch:
            count = max(1, min(parallel, trials - complete))
            asked = [study.ask(distributions) for _ in range(count)]
            batch = [(trial.number, trial.params) for trial in asked]
        runs = {number: plan.trial_runs(number, params) for number, params in batch}
        run([r for trial_runs in runs.values() for r in trial_runs], parallel)
        for number, trial_runs in runs.items():
            value = objective([read_results(r.model_dir) for r in trial_runs])
            if value is None:
                study.tell(number, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(number, value)
    best = choose(study.trials)
    return {"number": best.number, "params": best.params, "value": best.value}


def choose(trials: Sequence) -> object:
    """The complete trial of lowest validation error; a tie (a validation split of a few
    hundred images makes ties common) goes to the least Local Clustering: the smallest
    `lc_weight` where the space has it, then the earliest trial."""
    import optuna

    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    lowest = min(t.value for t in complete)
    tied = [t for t in complete if t.value <= lowest + TIE]
    return min(tied, key=lambda t: (t.params.get("lc_weight", 0.0), t.number))


def summarize(plan: TuningPlan, best: dict) -> dict:
    """tune.json: the trials (values and validation errors), the chosen setting, and the
    confirmation's test errors with the paired MT+LC - MT difference."""
    import optuna

    study = study_of(plan)
    trials = [
        {"number": t.number, "params": t.params, "state": t.state.name, OBJECTIVE: t.value}
        for t in study.trials
    ]
    confirmation = {"seeds": [], "mt": {}, "mtlc": {}}
    runs = plan.confirmation_runs(best["params"])
    finished = []
    for method in ("mt", "mtlc"):
        for run in runs:
            result = read_results(run.model_dir) if run.method == method else None
            if result and result.get("completed"):
                confirmation[method][run.seed] = result["teacher_test_error"]
                finished.append(result)
    # Named by the method the runs trained (FixMatch or Mean Teacher).
    confirmation["method_names"] = {role: method_name(role, finished) for role in ("mt", "mtlc")}
    common = sorted(set(confirmation["mt"]) & set(confirmation["mtlc"]))
    confirmation["seeds"] = common
    for method in ("mt", "mtlc"):
        values = [confirmation[method][seed] for seed in common]
        mean, std = mean_std(values)
        confirmation[f"{method}_teacher_test_error_mean"] = mean
        confirmation[f"{method}_teacher_test_error_std"] = std
    confirmation["paired"] = paired_difference(
        [confirmation["mtlc"][seed] for seed in common],
        [confirmation["mt"][seed] for seed in common],
    )
    return nan_to_none(
        {
            "setting": plan.setting,
            "objective": f"mean final {OBJECTIVE} over the tuning seeds (never a test error)",
            "sampler": f"optuna {optuna.__version__} TPESampler(seed={SAMPLER_SEED})",
            "space": [dataclasses.asdict(dimension) for dimension in plan.space],
            "tune_seeds": plan.tune_seeds,
            "fork": plan.fork,
            "overrides": plan.extra,
            "trials": trials,
            "best": best,
            "confirmation": confirmation,
        }
    )


def markdown(summary: dict) -> str:
    """tune.md: the chosen values, the trials, and the confirmation."""
    best, confirmation = summary["best"], summary["confirmation"]
    paired = confirmation["paired"]
    # A tune.json written before the names were recorded is Mean Teacher's.
    names = confirmation.get("method_names") or {role: method_name(role) for role in ("mt", "mtlc")}

    def number(value, digits=2):
        return "—" if value is None else f"{value:.{digits}f}"

    lines = [
        f"# Tuning {summary['setting']}: chosen on the validation split, confirmed on fresh seeds",
        "",
        f"Chosen (trial {best['number']}, validation error {number(best['value'])} %): "
        + ", ".join(f"`{name}={value}`" for name, value in sorted(best["params"].items())),
        "",
        "| trial | "
        + " | ".join(d["name"] for d in summary["space"])
        + " | validation error (%) |",
        "|---|" + "---|" * len(summary["space"]) + "---|",
    ]
    for trial in summary["trials"]:
        values = " | ".join(str(trial["params"].get(d["name"], "")) for d in summary["space"])
        error = number(trial[OBJECTIVE]) if trial["state"] == "COMPLETE" else trial["state"]
        lines.append(f"| {trial['number']} | {values} | {error} |")
    seeds = ",".join(map(str, confirmation["seeds"]))
    lines += [
        "",
        f"Confirmation on fresh seeds {seeds}: final teacher test error (%), mean ± std",
        "",
        f"| {names['mt']} | {names['mtlc']} (chosen) | with LC − without, paired | 95 % interval |",
        "|---|---|---|---|",
        f"| {number(confirmation['mt_teacher_test_error_mean'])} ± "
        f"{number(confirmation['mt_teacher_test_error_std'])} "
        f"| {number(confirmation['mtlc_teacher_test_error_mean'])} ± "
        f"{number(confirmation['mtlc_teacher_test_error_std'])} "
        f"| {number(paired['mean'])} | [{number(paired['ci'][0])}, {number(paired['ci'][1])}] |",
        "",
    ]
    return "\n".join(lines) + made_by_markdown(summary)


def tune(
    plan: TuningPlan,
    trials: int,
    parallel: int = 1,
    run: Callable = execute,
    made_by: dict | None = None,
) -> tuple[dict, list[str]]:
    """The search, then the confirmation; writes tune.json and tune.md (with `made_by`,
    lcmt_tf.provenance.made_by, when given). Returns the summary and the paths written."""
    best = search(plan, trials, parallel, run)
    run(plan.confirmation_runs(best["params"]), parallel)
    summary = summarize(plan, best)
    if made_by:
        summary["made_by"] = made_by
    paths = [os.path.join(plan.folder, f"tune.{ending}") for ending in ("json", "md")]
    atomic_write_json(paths[0], summary)
    atomic_write_text(paths[1], markdown(summary))
    try:  # the confirmation's diagnostics: ROOT/S/tune/confirm/bias.{json,png}
        from lcmt_tf.experiments.curves import write_bias

        paths += write_bias(plan.folder, "confirm", made_by)
    except (UserInputError, MissingExtraError) as error:
        logging.warning("no confirmation-bias figure: %s", error)
    return summary, paths
