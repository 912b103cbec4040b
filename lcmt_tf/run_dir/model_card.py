"""A model card (README.md in the Hugging Face format) for a finished run or an export:
YAML metadata with a model-index of the final errors, then what the model is, what it
was trained on, the exact command that trains it again, and the software."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from lcmt_tf.config import TrainConfig


def train_command(config: TrainConfig) -> str:
    """The `lcmt train` command that trains this configuration: every setting that
    differs from its default, as a flag."""
    defaults = TrainConfig()
    flags = []
    for field in dataclasses.fields(TrainConfig):
        value = getattr(config, field.name)
        if value != getattr(defaults, field.name):
            shown = str(value).lower() if isinstance(value, bool) else value
            flags.append(f"--{field.name}={shown}")
    return " ".join(["lcmt train", *flags])


def _error(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.2f} %"


def model_card(results: dict[str, Any], dataset_info: dict[str, Any], title: str) -> str:
    """The README.md text of a run from its results.json and dataset.json values."""
    config = TrainConfig.from_dict(results["config"])
    software = results.get("software", {})
    method = "MT + LC" if config.lc_weight > 0 else "Mean Teacher"
    if config.consistency_weight == 0 and config.lc_weight == 0:
        method = "supervised only"
    evaluated_on = results.get("evaluation_set", "test set")
    # The best over evaluations is on the split the run monitored while training.
    split = "validation" if "teacher_best_validation_error" in results else "test"
    selection = "the test set" if split == "test" else "the validation split"
    metrics = [
        ("teacher test error, final epoch", results.get("teacher_test_error")),
        ("student test error, final epoch", results.get("student_test_error")),
        ("teacher validation error, final epoch", results.get("teacher_validation_error")),
        (
            f"lowest teacher {split} error over the run's evaluations (selected on "
            f"{selection}; not the result)",
            results.get(f"teacher_best_{split}_error"),
        ),
    ]
    metric_lines = "".join(
        f"          - type: error\n            name: {json.dumps(name)}\n"
        f"            value: {value:.4f}\n"
        for name, value in metrics
        if value is not None
    )
    front = (
        "---\n"
        "library_name: keras\n"
        "pipeline_tag: image-classification\n"
        "tags:\n  - semi-supervised-learning\n  - mean-teacher\n  - local-clustering\n"
        "  - lcmt_tf\n"
        "license: apache-2.0\n"
        "model-index:\n"
        f"  - name: {json.dumps(title)}\n"
        "    results:\n"
        "      - task:\n          type: image-classification\n"
        f"        dataset:\n          name: {json.dumps(config.dataset)}\n"
        f"          type: {json.dumps(config.dataset)}\n"
        "          split: test\n"
        "        metrics:\n" + metric_lines + "---\n"
    )
    classes = [str(name) for name in dataset_info.get("class_names", [])]
    shown_classes = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
    ended = "" if results.get("completed") else f" (stopped: {results.get('stop_reason')})"
    rows = [
        ("teacher test error (final epoch)", _error(results.get("teacher_test_error"))),
        ("student test error (final epoch)", _error(results.get("student_test_error"))),
        *(
            [
                (
                    "teacher validation error (final epoch)",
                    _error(results["teacher_validation_error"]),
                )
            ]
            if results.get("teacher_validation_error") is not None
            else []
        ),
        (
            f"lowest teacher {split} error over the evaluations (epoch "
            f"{results.get(f'teacher_best_{split}_error_epoch')}; selected on {selection}, "
            "for comparison with papers that report it)",
            _error(results.get(f"teacher_best_{split}_error")),
        ),
        ("evaluated on", evaluated_on),
        (
            "data",
            f"`{config.dataset}`: {results.get('num_labeled')} labeled and "
            f"{results.get('num_unlabeled')} unlabeled training images; {len(classes)} "
            f"classes ({shown_classes})",
        ),
        ("network", f"`{config.model}` at width {config.width:g}"),
        (
            "seeds",
            f"`--seed={config.seed}` (initialization, batches, augmentation), "
            f"`--label_seed={config.label_seed}` (which images are labeled)",
        ),
        ("epochs", f"{results.get('epochs_run')} of {config.epochs}{ended}"),
    ]
    table = "\n".join(["| | |", "|---|---|", *(f"| {key} | {value} |" for key, value in rows)])
    versions = ", ".join(
        f"{key} {value}" for key, value in software.items() if value not in (None, [], "")
    )
    body = "\n".join(
        [
            "",
            f"# {title}",
            "",
            f"A {method} image classifier trained with lcmt_tf, the Keras 3 implementation of",
            '"Local Clustering with Mean Teacher for Semi-supervised Learning" (Chen et al.,',
            "arXiv:2004.09665; the authors' code:",
            "https://github.com/jay1204/local_clustering_with_mt_for_ssl). It holds a student",
            "and a teacher network (the exponential moving average of the student's weights);",
            "predictions are the teacher's.",
            "",
            table,
            "",
            "## Train it again",
            "",
            "```bash",
            train_command(config),
            "```",
            "",
            "## Software",
            "",
            versions,
            "",
        ]
    )
    return front + body


def write_model_card(path: str, results: dict, dataset_info: dict, title: str) -> None:
    from lcmt_tf.files import atomic_write_text

    atomic_write_text(path, model_card(results, dataset_info, title))
