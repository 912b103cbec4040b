"""One frozen dataclass for a training run, and the one place that validates it.

Field names are the command line's flag names, and each field carries its flag's
help text (`dataclasses.fields(TrainConfig)[i].metadata["help"]`): scripts/train.py
defines its flags from these fields, and notebooks build a TrainConfig directly.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from lcmt_tf.errors import UserInputError
from lcmt_tf.models import KERAS_APPLICATIONS_PREFIX, MODELS, is_model_name, model_spec

if TYPE_CHECKING:
    from lcmt_tf.data import ImageDataset

MIXED_PRECISION = ("", "bfloat16", "float16")
WEIGHT_DECAY_MODES = ("coupled", "decoupled")
FORWARD_PASSES = ("joint", "separate")
TRANSLATE_PADDINGS = ("reflect", "zero")
DISTRIBUTIONS = ("none", "mirrored", "multi_worker")
METHODS = ("mean_teacher", "fixmatch")
LR_SCHEDULES = ("linear", "cosine")
# --dataset names of the benchmark data sets, and their tensorflow-datasets names.
TFDS_NAMES = {"cifar10": "cifar10", "svhn": "svhn_cropped", "stl10": "stl10"}

# Fields that may differ when a run is resumed: they do not change what is computed (a run
# directory may be moved, or named by another path).
RESUMABLE_DIFFERENCES = (
    "data_dir",
    "download",
    "model_dir",
    "overwrite",
    "verbose",
    "steps_per_execution",
    "keep_epochs",
    "fork_from",
    "cache_dir",
    "max_image_pixels",
    "sanity_check",
    "diagnostics_sample",
    # How a multi-worker run is launched, not what it computes; each process has its own.
    "coordinator_address",
    "num_processes",
    "process_id",
)


def setting(default: Any, help_text: str) -> Any:
    """A TrainConfig field: its default and the help text of its flag."""
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run. Defaults: the paper's shared settings (section V-A) on
    the embedded digits data set."""

    # data
    dataset: str = setting("digits", "cifar10, svhn, stl10, digits, npz:PATH or folder:PATH")
    data_dir: str | None = setting(
        None, "tensorflow-datasets data directory (cifar10, svhn, stl10)"
    )
    download: bool = setting(
        False, "let tensorflow-datasets download cifar10/svhn/stl10 if missing"
    )
    num_labels: int | str = setting(
        "50",
        "labeled training images, divisible by the class count; 'all': every image under a "
        "folder's train/<class>/ (the unlabeled images come from its unlabeled/)",
    )
    label_seed: int = setting(0, "seed of the labeled split")
    validation_fraction: float = setting(
        0.0,
        "hold out this share of each class's labeled training images (stratified, "
        "--label_seed) and evaluate on them while training (val_* in the logs); the test "
        "set is evaluated once, at the end; 0 = evaluate on the test set",
    )
    image_size: str = setting(
        "", "H,W: resize every folder image to this size; '' = refuse mixed sizes"
    )
    max_image_pixels: int = setting(
        89_478_485,
        "refuse a folder image with more pixels than this, before decoding it (a "
        "decompression bomb); PIL's default limit",
    )
    cache_dir: str = setting(
        "",
        "where decoded images are cached: a folder's, and stl10's unlabeled split, which "
        "training reads from there a batch at a time ('' = ~/.cache/lcmt_tf/folders, "
        "'none' = no cache: everything in memory)",
    )
    labeled_batch_size: int = setting(32, "labeled images per step")
    unlabeled_batch_size: int = setting(
        128, "unlabeled images per step (an epoch = one pass over them)"
    )
    # augmentation
    translate: int = setting(2, "random translation, pixels")
    translate_padding: str = setting(
        "reflect",
        "border of a translated image: reflect (the Mean Teacher code) or zero (black, as the "
        "LC authors' RandomCrop)",
    )
    hflip: bool = setting(False, "random horizontal flips")
    input_noise: float = setting(0.0, "std of Gaussian noise added to normalized images")
    # model
    model: str = setting(
        "digits_net",
        f"network: {', '.join(MODELS)}; keras_applications:NAME (a keras.applications "
        "backbone, e.g. keras_applications:ResNet50V2, random weights or --backbone_weights); "
        "or keras_hub:PRESET_DIR (a KerasHub image backbone with its weights, from a local "
        "preset folder; needs keras-hub)",
    )
    init_from: str = setting(
        "",
        "start the student (and the teacher) from pretrained weights: a run directory's "
        "final student, a .keras model or a .weights.h5 file, matched layer by layer",
    )
    backbone_weights: str = setting(
        "",
        "with --model=keras_applications:NAME, a weights file of that backbone without its "
        "top (e.g. the ImageNet .h5 keras.applications downloads), given to its weights= "
        "argument; '' = random initialization (nothing is downloaded)",
    )
    width: float = setting(
        1.0,
        "channel-count multiplier of the network (conv_large_wn below 1: scale --lr by "
        "the width, or it can diverge; README, 'Reduced widths')",
    )
    forward_passes: str = setting(
        "joint",
        "joint: each network runs once over labeled and unlabeled images together; separate: "
        "once per group, as the authors' code (batch statistics per group)",
    )
    # optimization
    seed: int = setting(0, "seed of initialization, augmentation, dropout and batch order")
    epochs: int = setting(100, "total epochs")
    lr: float = setting(0.05, "base learning rate (SGD)")
    lr_decay_epochs: int = setting(
        0, "linear decay of the learning rate to 0 over the last N epochs"
    )
    momentum: float = setting(0.9, "SGD momentum")
    nesterov: bool = setting(True, "Nesterov momentum")
    weight_decay: float = setting(1e-4, "weight decay factor (0 = none)")
    weight_decay_mode: str = setting(
        "coupled",
        "coupled: L2 added to the gradient before momentum, as PyTorch's SGD (the authors' "
        "code); decoupled: Keras' SGD weight decay, w -= lr * weight_decay * w",
    )
    lr_schedule: str = setting(
        "linear",
        "linear: --lr, then linearly to 0 over the last --lr_decay_epochs epochs (the "
        "paper's); cosine: FixMatch's lr * cos(7 pi k / (16 K)) at step k, K = "
        "--lr_schedule_steps",
    )
    lr_schedule_steps: int = setting(
        0, "K of --lr_schedule=cosine: the steps its decay is planned over (FixMatch: 2^20)"
    )
    ema_decay: float = setting(
        0.99, "teacher EMA decay alpha (FixMatch: its EMA model, evaluated as the teacher)"
    )
    # method
    method: str = setting(
        "mean_teacher",
        "mean_teacher: consistency with an EMA teacher (the paper's); fixmatch: confident "
        "pseudo-labels of weak views train the strong views (Sohn et al. 2020). Local "
        "Clustering (--lc_weight) applies to both",
    )
    # Mean Teacher and Local Clustering
    consistency_weight: float = setting(
        100.0, "lambda1, the consistency cost's weight after ramp-up (0 = none)"
    )
    consistency_rampup_epochs: int = setting(5, "sigmoid ramp-up length of lambda1, epochs")
    lc_weight: float = setting(
        0.0, "lambda2, the LC loss's weight after ramp-up (0 = plain Mean Teacher)"
    )
    lc_start_epoch: int = setting(0, "epoch at which Local Clustering starts")
    lc_rampup_epochs: int = setting(0, "sigmoid ramp-up length of lambda2, epochs")
    lc_epsilon: float = setting(
        1.0, "LC neighborhood radius epsilon (mean squared feature distance)"
    )
    lc_epsilon_quantile: float = setting(
        0.0,
        "extension, not in the paper: with q in (0, 1), epsilon is set at --lc_start_epoch "
        "to the q-quantile of the LC pair distances measured on the current model, and "
        "kept; 0 = use --lc_epsilon",
    )
    lc_epsilon_batch_quantile: float = setting(
        0.0,
        "extension, not in the paper: with q in (0, 1), epsilon is the q-quantile of every "
        "step's LC pair distances (no gradient), so it follows the features' scale as LC "
        "contracts them; measured in Mean Teacher runs too; 0 = a fixed epsilon",
    )
    lc_epsilon_batch_momentum: float = setting(
        0.0,
        "with --lc_epsilon_batch_quantile: epsilon = m * previous + (1 - m) * the step's "
        "quantile, a moving average over steps starting from --lc_epsilon; 0 = each step's "
        "own quantile",
    )
    lc_self_pairs: bool = setting(
        True,
        "count the i = j pairs of the unlabeled block as LC neighbours, as the authors' code "
        "does (distance 0: each adds 1 to the loss's denominator and nothing to its "
        "numerator); false = only pairs of two different images",
    )
    # FixMatch (--method=fixmatch)
    fixmatch_threshold: float = setting(
        0.95, "FixMatch's tau: a pseudo-label counts where its confidence is at least this"
    )
    unlabeled_weight: float = setting(
        1.0, "FixMatch's lambda_u, the pseudo-label cross-entropy's weight (constant)"
    )
    unlabeled_ratio: int = setting(
        0,
        "FixMatch's mu: with mu >= 1, --unlabeled_batch_size is mu times "
        "--labeled_batch_size (and the flag's own value is ignored); 0 = as given",
    )
    strong_num_ops: int = setting(
        2, "FixMatch's strong view: RandAugment operations per image (0 = none)"
    )
    strong_magnitude: float = setting(
        0.5, "FixMatch's strong view: RandAugment's magnitude factor, in [0, 1]"
    )
    strong_cutout: float = setting(
        0.5,
        "FixMatch's strong view: Cutout, a gray square of side up to this share of the "
        "image's side (0 = none)",
    )
    # running
    eval_every: int = setting(
        5,
        "evaluate every N epochs and after the last (fit's validation_data: on the "
        "validation split with --validation_fraction, else on the test set)",
    )
    diagnostics_sample: int = setting(
        2000,
        "at every evaluation, confirmation-bias diagnostics over this many unlabeled images "
        "whose true labels are known (a fixed seeded sample of the pool; the labels are "
        "never trained on); 0 = off. One device only",
    )
    model_dir: str = setting(
        "runs/default", "run directory: logs, checkpoints, results; rerun to resume"
    )
    overwrite: bool = setting(
        False,
        "start anew in a --model_dir that holds another run: its files move to "
        "MODEL_DIR/replaced-DATE-TIME/ (nothing is deleted)",
    )
    keep_epochs: str = setting(
        "",
        "comma-separated epochs after which the training state is also kept in "
        "training_state_epochE.npz, for later runs to --fork_from",
    )
    fork_from: str = setting(
        "",
        "run directory to start from: its state after --lc_start_epoch epochs (kept with "
        "--keep_epochs); everything that shapes those epochs must agree",
    )
    deterministic: bool = setting(
        False,
        "bit-identical runs on CPU (TensorFlow op determinism; torch.use_deterministic_algorithms)",
    )
    stop_on_collapse: bool = setting(False, "stop when the feature distribution collapses")
    sanity_check: bool = setting(
        True,
        "before training, check on the first batch that every active loss term has a "
        "gradient into the student and none into the teacher",
    )
    jit_compile: bool = setting(
        False, "XLA-compile the TensorFlow training step (the JAX step is always compiled)"
    )
    steps_per_execution: int = setting(
        1,
        "training steps per call of the compiled function; callbacks and the progress bar "
        "see every N-th step, so a GPU is not held up by Python between steps",
    )
    mixed_precision: str = setting("", "'', bfloat16 or float16 compute (weights stay float32)")
    distribute: str = setting(
        "none",
        "none: one device; mirrored: data-parallel over this machine's accelerators, or its "
        "CPU split into --num_cpu_devices (TensorFlow MirroredStrategy, JAX DataParallel); "
        "multi_worker: over several processes or machines, one launch each "
        "(MultiWorkerMirroredStrategy with TF_CONFIG; jax.distributed)",
    )
    num_cpu_devices: int = setting(
        0, "split the host CPU into this many logical devices (0 = as it is), for --distribute"
    )
    sync_batchnorm: bool = setting(
        False,
        "TensorFlow, data-parallel: batch-norm statistics over the global batch (Keras' "
        "synchronized BatchNormalization) instead of per replica; on JAX they already are",
    )
    coordinator_address: str = setting(
        "",
        "JAX --distribute=multi_worker: host:port of process 0 (empty: "
        "KERAS_DISTRIBUTION_JOB_ADDRESSES, or what jax.distributed detects, e.g. SLURM); "
        "TensorFlow reads the cluster from TF_CONFIG",
    )
    num_processes: int = setting(
        0, "JAX --distribute=multi_worker: number of processes (0: from the environment)"
    )
    process_id: int = setting(
        -1, "JAX --distribute=multi_worker: this process's index (-1: from the environment)"
    )
    verbose: int = setting(
        1,
        "0 silent, 1 progress bar (a line per epoch when the output is not a terminal), "
        "2 one line per epoch",
    )

    def __post_init__(self):
        # The flag is a string ('all' or a number); a number is kept as an int.
        if isinstance(self.num_labels, str) and self.num_labels.strip().isdigit():
            object.__setattr__(self, "num_labels", int(self.num_labels))
        if isinstance(self.unlabeled_ratio, int) and self.unlabeled_ratio >= 1:
            unlabeled = self.unlabeled_ratio * self.labeled_batch_size
            object.__setattr__(self, "unlabeled_batch_size", unlabeled)

    def labels_all(self) -> bool:
        """--num_labels=all: every image of the labeled classes is labeled."""
        return self.num_labels == "all"

    def image_size_pair(self) -> tuple[int, int] | None:
        """--image_size as (height, width), or None (validate() checks it)."""
        if not self.image_size:
            return None
        height, width = (int(part) for part in self.image_size.split(","))
        return height, width

    def cache_directory(self) -> str | None:
        return None if self.cache_dir == "none" else self.cache_dir

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

    def kept_epochs(self) -> tuple[int, ...]:
        """--keep_epochs as sorted epoch numbers (validate() checks them)."""
        parts = [part.strip() for part in self.keep_epochs.split(",") if part.strip()]
        return tuple(sorted({int(part) for part in parts}))

    def validate(self) -> "TrainConfig":
        """Raises UserInputError naming the first invalid setting and its fix."""
        _check(self.max_image_pixels >= 1, "--max_image_pixels must be >= 1")
        _check(
            self.labels_all() or (isinstance(self.num_labels, int) and self.num_labels >= 1),
            f"--num_labels={self.num_labels!r} must be a number >= 1 or 'all'",
        )
        _check(
            0 <= self.validation_fraction < 1,
            "--validation_fraction must be in [0, 1) (0 = evaluate on the test set)",
        )
        try:
            size = self.image_size_pair()
        except ValueError:
            size = (0, 0)
        _check(
            size is None or min(size) >= 1,
            f"--image_size={self.image_size!r} must be H,W in pixels, e.g. 32,32",
        )
        _check(
            self.labeled_batch_size >= 1 and self.unlabeled_batch_size >= 1,
            "--labeled_batch_size and --unlabeled_batch_size must be >= 1",
        )
        _check(self.translate >= 0, "--translate must be >= 0 pixels")
        _check(
            self.translate_padding in TRANSLATE_PADDINGS,
            f"--translate_padding must be reflect or zero, not {self.translate_padding!r}",
        )
        _check(
            self.forward_passes in FORWARD_PASSES,
            f"--forward_passes must be joint or separate, not {self.forward_passes!r}",
        )
        _check(self.input_noise >= 0, "--input_noise must be >= 0")
        _check(
            is_model_name(self.model),
            f"--model must be one of {', '.join(MODELS)}, keras_applications:NAME or "
            f"keras_hub:PRESET_DIR, not {self.model!r}",
        )
        if self.backbone_weights:
            _check(
                self.model.startswith(KERAS_APPLICATIONS_PREFIX),
                "--backbone_weights applies to --model=keras_applications:NAME; for the other "
                "networks use --init_from",
            )
        _check(self.width > 0, "--width must be > 0")
        _check(self.epochs >= 1, "--epochs must be >= 1")
        _check(self.lr > 0, "--lr must be > 0")
        _check(
            0 <= self.lr_decay_epochs <= self.epochs,
            f"--lr_decay_epochs must be between 0 and --epochs={self.epochs}",
        )
        _check(0 <= self.momentum < 1, "--momentum must be in [0, 1)")
        _check(self.weight_decay >= 0, "--weight_decay must be >= 0")
        _check(
            self.weight_decay_mode in WEIGHT_DECAY_MODES,
            f"--weight_decay_mode must be coupled or decoupled, not {self.weight_decay_mode!r}",
        )
        _check(0 <= self.ema_decay < 1, "--ema_decay must be in [0, 1)")
        _check(
            self.lr_schedule in LR_SCHEDULES,
            f"--lr_schedule must be linear or cosine, not {self.lr_schedule!r}",
        )
        if self.lr_schedule == "cosine":
            _check(
                self.lr_schedule_steps >= 1,
                "--lr_schedule=cosine needs --lr_schedule_steps=K >= 1, the steps its decay "
                "is planned over (FixMatch: 1048576)",
            )
            _check(
                self.lr_decay_epochs == 0,
                "--lr_decay_epochs is the linear schedule's; with --lr_schedule=cosine set it to 0",
            )
        _check(
            self.method in METHODS,
            f"--method must be mean_teacher or fixmatch, not {self.method!r}",
        )
        _check(0 <= self.fixmatch_threshold <= 1, "--fixmatch_threshold must be in [0, 1]")
        _check(self.unlabeled_weight >= 0, "--unlabeled_weight must be >= 0")
        _check(self.unlabeled_ratio >= 0, "--unlabeled_ratio must be >= 0 (0 = as given)")
        _check(self.strong_num_ops >= 0, "--strong_num_ops must be >= 0")
        _check(0 <= self.strong_magnitude <= 1, "--strong_magnitude must be in [0, 1]")
        _check(0 <= self.strong_cutout < 1, "--strong_cutout must be in [0, 1)")
        _check(self.consistency_weight >= 0, "--consistency_weight must be >= 0")
        _check(self.consistency_rampup_epochs >= 0, "--consistency_rampup_epochs must be >= 0")
        _check(self.lc_weight >= 0, "--lc_weight must be >= 0 (0 = plain Mean Teacher)")
        _check(self.lc_start_epoch >= 0, "--lc_start_epoch must be >= 0")
        _check(self.lc_rampup_epochs >= 0, "--lc_rampup_epochs must be >= 0")
        _check(self.lc_epsilon > 0, "--lc_epsilon must be > 0")
        _check(
            0 <= self.lc_epsilon_quantile < 1,
            "--lc_epsilon_quantile must be in [0, 1) (0 = use --lc_epsilon)",
        )
        _check(
            self.lc_weight == 0 or self.lc_start_epoch < self.epochs,
            f"--lc_start_epoch={self.lc_start_epoch} is not before --epochs={self.epochs}: "
            "Local Clustering would never run; lower it or set --lc_weight=0",
        )
        _check(self.eval_every >= 1, "--eval_every must be >= 1 epoch")
        _check(self.diagnostics_sample >= 0, "--diagnostics_sample must be >= 0 (0 = off)")
        _check(
            0 <= self.lc_epsilon_batch_quantile < 1,
            "--lc_epsilon_batch_quantile must be in [0, 1) (0 = a fixed epsilon)",
        )
        _check(
            0 <= self.lc_epsilon_batch_momentum < 1,
            "--lc_epsilon_batch_momentum must be in [0, 1)",
        )
        _check(
            not (self.lc_epsilon_batch_quantile and self.lc_epsilon_quantile),
            "--lc_epsilon_batch_quantile and --lc_epsilon_quantile both set epsilon: give one",
        )
        try:
            kept = self.kept_epochs()
        except ValueError:
            kept = (0,)
        _check(
            all(1 <= epoch <= self.epochs for epoch in kept),
            f"--keep_epochs={self.keep_epochs!r} must list epochs between 1 and "
            f"--epochs={self.epochs}, separated by commas",
        )
        _check(
            not self.fork_from or self.lc_start_epoch >= 1,
            "--fork_from starts at --lc_start_epoch, which must be >= 1",
        )
        _check(bool(self.model_dir), "--model_dir must name a directory")
        _check(self.steps_per_execution >= 1, "--steps_per_execution must be >= 1")
        _check(
            self.distribute in DISTRIBUTIONS,
            f"--distribute must be one of {', '.join(DISTRIBUTIONS)}, not {self.distribute!r}",
        )
        _check(self.num_cpu_devices >= 0, "--num_cpu_devices must be >= 0")
        _check(self.num_processes >= 0, "--num_processes must be >= 0 (0: from the environment)")
        _check(self.process_id >= -1, "--process_id must be >= 0 (or -1: from the environment)")
        _check(
            self.num_processes == 0 or self.process_id < self.num_processes,
            f"--process_id={self.process_id} must be below --num_processes={self.num_processes}",
        )
        launch = self.coordinator_address or self.num_processes or self.process_id >= 0
        _check(
            not launch or self.distribute == "multi_worker",
            "--coordinator_address, --num_processes and --process_id launch "
            "--distribute=multi_worker",
        )
        _check(
            self.mixed_precision in MIXED_PRECISION,
            "--mixed_precision must be empty, bfloat16 or float16",
        )
        source_kind(self.dataset)
        return self

    def check_against_data(self, dataset: "ImageDataset") -> "TrainConfig":
        """Raises UserInputError for settings the loaded data cannot satisfy: the
        labeled split, one unlabeled batch, something to evaluate on, the network's
        and the translation's image size."""
        num_classes = dataset.num_classes
        extra_unlabeled = len(dataset.x_unlabeled)
        if self.labels_all():
            num_unlabeled = extra_unlabeled
            _check(
                num_unlabeled >= self.unlabeled_batch_size,
                f"--num_labels=all labels every training image, and {num_unlabeled} images "
                f"in unlabeled/ do not fill one batch of --unlabeled_batch_size="
                f"{self.unlabeled_batch_size}; add unlabeled images or give a number",
            )
        else:
            _check(
                self.num_labels % num_classes == 0,
                f"--num_labels={self.num_labels} is not divisible by the {num_classes} "
                f"classes; use a multiple of {num_classes}",
            )
            per_class = self.num_labels // num_classes
            # Without other unlabeled images, every class must leave some unlabeled.
            spare = 0 if extra_unlabeled else 1
            for label, count in enumerate(dataset.class_counts()):
                _check(
                    count >= per_class + spare,
                    f"--num_labels={self.num_labels} needs {per_class} labeled images of class "
                    f"{label}{' plus unlabeled ones' if spare else ''}, but it has {count} images",
                )
            num_unlabeled = len(dataset.y_train) + extra_unlabeled - self.num_labels
            _check(
                num_unlabeled >= self.unlabeled_batch_size,
                f"{num_unlabeled} unlabeled images do not fill one batch of "
                f"--unlabeled_batch_size={self.unlabeled_batch_size}",
            )
        _check(
            len(dataset.y_test) > 0 or len(dataset.y_validation) > 0,
            f"{dataset.name} has no test images (no test/<class>/ folder): add them, or pass "
            "--validation_fraction=F to evaluate on held-out labeled images",
        )
        height, width, _ = dataset.image_shape
        min_size = model_spec(self.model).min_image_size
        if min(height, width) < min_size:
            fitting = [
                name for name, spec in MODELS.items() if spec.min_image_size <= min(height, width)
            ]
            hint = f"use --model={' or --model='.join(fitting)}" if fitting else "use larger images"
            raise UserInputError(
                f"{self.model} needs images of at least {min_size}x{min_size}, {dataset.name} "
                f"has {height}x{width}; {hint}"
            )
        _check(
            self.translate < min(height, width),
            f"--translate={self.translate} must be smaller than the image size {height}x{width}",
        )
        return self


def source_kind(dataset: str) -> str:
    """'tfds', 'npz', 'folder' or 'digits'; raises UserInputError for anything else."""
    if dataset in TFDS_NAMES:
        return "tfds"
    if dataset == "digits":
        return "digits"
    prefix, _, path = dataset.partition(":")
    if prefix in ("npz", "folder") and path:
        return prefix
    raise UserInputError(
        f"--dataset={dataset!r} is not a known source: use cifar10, svhn, stl10, digits, "
        "npz:PATH or folder:PATH"
    )


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UserInputError(message)
