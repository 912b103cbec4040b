"""One frozen dataclass for a training run, and the one place that validates it.

Field names are the command line's flag names; `scripts/train.py` builds a
TrainConfig from its flags, and notebooks build one directly.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from lcmt_tf.errors import UserInputError

MODELS = ("conv_large", "digits_net")
MIXED_PRECISION = ("", "bfloat16", "float16")

# Fields that may differ when a run is resumed: they do not change what is computed.
RESUMABLE_DIFFERENCES = ("data_dir", "download", "overwrite", "verbose", "steps_per_execution")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run. Defaults: the paper's shared settings (section V-A) on
    the embedded digits data set."""

    # data
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    num_labels: int = 50
    label_seed: int = 0
    labeled_batch_size: int = 32
    unlabeled_batch_size: int = 128
    # augmentation
    translate: int = 2
    hflip: bool = False
    input_noise: float = 0.0
    # model
    model: str = "digits_net"
    width: float = 1.0
    # optimization
    seed: int = 0
    epochs: int = 100
    lr: float = 0.05
    lr_decay_epochs: int = 0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    ema_decay: float = 0.99
    # Mean Teacher and Local Clustering
    consistency_weight: float = 100.0
    consistency_rampup_epochs: int = 5
    lc_weight: float = 0.0
    lc_start_epoch: int = 0
    lc_rampup_epochs: int = 0
    lc_epsilon: float = 1.0
    # running
    eval_every: int = 5
    model_dir: str = "runs/default"
    overwrite: bool = False
    deterministic: bool = False
    stop_on_collapse: bool = False
    jit_compile: bool = False
    steps_per_execution: int = 1
    mixed_precision: str = ""
    verbose: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        unknown = set(values) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise UserInputError(f"unknown settings {sorted(unknown)}")
        return cls(**values)

    def lr_decay_start(self) -> int:
        return self.epochs - self.lr_decay_epochs

    def validate(self) -> "TrainConfig":
        """Raises UserInputError naming the first invalid setting and its fix."""
        _check(self.num_labels >= 1, "--num_labels must be >= 1")
        _check(
            self.labeled_batch_size >= 1 and self.unlabeled_batch_size >= 1,
            "--labeled_batch_size and --unlabeled_batch_size must be >= 1",
        )
        _check(self.translate >= 0, "--translate must be >= 0 pixels")
        _check(self.input_noise >= 0, "--input_noise must be >= 0")
        _check(self.model in MODELS, f"--model must be one of {', '.join(MODELS)}, not {self.model!r}")
        _check(self.width > 0, "--width must be > 0")
        _check(self.epochs >= 1, "--epochs must be >= 1")
        _check(self.lr > 0, "--lr must be > 0")
        _check(
            0 <= self.lr_decay_epochs <= self.epochs,
            f"--lr_decay_epochs must be between 0 and --epochs={self.epochs}",
        )
        _check(0 <= self.momentum < 1, "--momentum must be in [0, 1)")
        _check(self.weight_decay >= 0, "--weight_decay must be >= 0")
        _check(0 <= self.ema_decay < 1, "--ema_decay must be in [0, 1)")
        _check(self.consistency_weight >= 0, "--consistency_weight must be >= 0")
        _check(self.consistency_rampup_epochs >= 0, "--consistency_rampup_epochs must be >= 0")
        _check(self.lc_weight >= 0, "--lc_weight must be >= 0 (0 = plain Mean Teacher)")
        _check(self.lc_start_epoch >= 0, "--lc_start_epoch must be >= 0")
        _check(self.lc_rampup_epochs >= 0, "--lc_rampup_epochs must be >= 0")
        _check(self.lc_epsilon > 0, "--lc_epsilon must be > 0")
        _check(
            self.lc_weight == 0 or self.lc_start_epoch < self.epochs,
            f"--lc_start_epoch={self.lc_start_epoch} is not before --epochs={self.epochs}: "
            "Local Clustering would never run; lower it or set --lc_weight=0",
        )
        _check(self.eval_every >= 1, "--eval_every must be >= 1 epoch")
        _check(bool(self.model_dir), "--model_dir must name a directory")
        _check(self.steps_per_execution >= 1, "--steps_per_execution must be >= 1")
        _check(
            self.mixed_precision in MIXED_PRECISION,
            "--mixed_precision must be empty, bfloat16 or float16",
        )
        from lcmt_tf.data.sources import source_kind

        source_kind(self.dataset)
        return self


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UserInputError(message)
