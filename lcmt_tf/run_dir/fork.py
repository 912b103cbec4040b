"""Starting a run from another run's state: the paper's protocol of training Mean
Teacher first and switching Local Clustering on from that model.

A run with `--fork_from=SOURCE` starts at its own `--lc_start_epoch` E from SOURCE's
training state after E epochs (kept there with `--keep_epochs=E`, or SOURCE's resume
file if SOURCE stopped exactly there). For the fork to equal the same run trained from
scratch, every setting that shapes the first E epochs must agree; `check_fork` refuses
the fork otherwise. Settings that act only from epoch E on may differ: the LC settings,
the run's length and the learning-rate decay, as long as neither run decays before E.
"""

from __future__ import annotations

import json
import os
import shutil

from lcmt_tf.config import RESUMABLE_DIFFERENCES, TrainConfig
from lcmt_tf.errors import UserInputError
from lcmt_tf.run_dir.layout import saved_epoch, snapshot_path
from lcmt_tf.run_dir.lock import check_not_in_use

# Settings that do not act before the fork point (or not on training at all).
MAY_DIFFER_AFTER_FORK = (
    *RESUMABLE_DIFFERENCES,
    "lc_weight",
    "lc_start_epoch",
    "lc_rampup_epochs",
    "lc_epsilon",
    "lc_epsilon_quantile",
    "lc_epsilon_batch_quantile",
    "lc_epsilon_batch_momentum",
    "lc_self_pairs",
    "epochs",
    "lr_decay_epochs",
    "stop_on_collapse",
)


def fork_state_path(config: TrainConfig, config_file: str, state_file: str) -> str:
    """Checks the fork of `config` from `config.fork_from` and returns the path of the
    state to start from. Raises UserInputError (one line) when SOURCE is not a run,
    disagrees on a setting that shapes the first E epochs, decays its learning rate
    before E, or has no state after E epochs."""
    source_dir, epoch = config.fork_from, config.lc_start_epoch
    source_config_path = os.path.join(source_dir, config_file)
    if not os.path.isfile(source_config_path):
        raise UserInputError(f"--fork_from={source_dir} is not a run directory (no {config_file})")
    try:
        with open(source_config_path) as file:
            source = TrainConfig.from_dict(json.load(file))
    except (OSError, ValueError, TypeError) as error:
        raise UserInputError(f"cannot read {source_config_path} ({error})") from None
    check_fork(config, source)
    check_not_in_use(source_dir, "fork from")
    for path in (snapshot_path(source_dir, epoch), os.path.join(source_dir, state_file)):
        if saved_epoch(path) == epoch:
            return path
    raise UserInputError(
        f"--fork_from={source_dir} has no training state after epoch {epoch} "
        f"(--lc_start_epoch); train it with --keep_epochs={epoch}"
    )


def check_fork(config: TrainConfig, source: TrainConfig) -> None:
    """Raises UserInputError unless `config` may start from `source`'s state after
    `config.lc_start_epoch` epochs. (A source shorter than that decays before it.)"""
    epoch = config.lc_start_epoch
    mine, theirs = config.to_dict(), source.to_dict()
    differences = sorted(
        key for key in mine if key not in MAY_DIFFER_AFTER_FORK and mine[key] != theirs.get(key)
    )
    if differences:
        shown = ", ".join(
            f"{key}: {theirs.get(key)!r} there, {mine[key]!r} here" for key in differences[:3]
        )
        raise UserInputError(
            f"--fork_from={config.fork_from} trained the first {epoch} epochs differently ({shown})"
        )
    if source.lc_weight > 0 and source.lc_start_epoch < epoch:
        raise UserInputError(
            f"--fork_from={config.fork_from} used Local Clustering from epoch "
            f"{source.lc_start_epoch}, before this run's --lc_start_epoch={epoch}"
        )
    for name, run in (("--fork_from's run", source), ("this run", config)):
        if run.lr_decay_start() < epoch:
            raise UserInputError(
                f"{name} decays its learning rate from epoch {run.lr_decay_start()}, before "
                f"the fork point --lc_start_epoch={epoch}: the runs would differ before it"
            )


def copy_history(source_dir: str, model_dir: str, history_file: str) -> None:
    """Gives the fork the source's per-epoch history (the first epochs are the same
    run); the history callback drops the rows from the fork point on."""
    source = os.path.join(source_dir, history_file)
    if os.path.isfile(source):
        shutil.copyfile(source, os.path.join(model_dir, history_file))
