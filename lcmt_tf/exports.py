"""Where an export's files go, and what `lcmt export --overwrite` may replace: only a
previous export, recognized by its own provenance file, and only by moving it aside.
No deep-learning backend: the command checks its --output before one starts."""

from __future__ import annotations

import json
import logging
import os
import time

from lcmt_tf.errors import UserInputError
from lcmt_tf.files import check_output_path

PROVENANCE = "provenance.json"


def export_files(output: str, export_format: str) -> list[str]:
    """The files an export to `output` writes (those of them that exist): the
    SavedModel folder itself, or the .onnx file with its class names, provenance and
    model card beside it."""
    if export_format == "savedmodel":
        return [output] if os.path.exists(output) else []
    base = os.path.splitext(output)[0]
    beside = ("class_names.json", PROVENANCE, "README.md")
    names = [output, *(f"{base}.{name}" for name in beside)]
    return [name for name in names if os.path.exists(name)]


def _provenance_path(output: str, export_format: str) -> str:
    if export_format == "savedmodel":
        return os.path.join(output, PROVENANCE)
    return f"{os.path.splitext(output)[0]}.{PROVENANCE}"


def is_previous_export(output: str, export_format: str) -> bool:
    """Whether `output` holds what `export_run` wrote: its provenance file names the
    run it was exported from."""
    try:
        with open(_provenance_path(output, export_format)) as file:
            return "exported_from" in json.load(file)
    except (OSError, ValueError, TypeError):
        return False


def check_export_output(output: str, export_format: str, overwrite: bool) -> None:
    """Before any work: `output` can be written, and with `overwrite` holds nothing
    or a previous export (anything else is a user's and is never replaced)."""
    check_output_path(
        output, "--output", directory=export_format == "savedmodel", overwrite=overwrite
    )
    exists = os.path.isfile(output) or (os.path.isdir(output) and os.listdir(output))
    if overwrite and exists and not is_previous_export(output, export_format):
        raise UserInputError(
            f"--output={output} holds files that are not an lcmt export (no "
            f"{os.path.basename(_provenance_path(output, export_format))} of one): --overwrite "
            "replaces only a previous export; choose another --output"
        )


def move_export_aside(output: str, export_format: str) -> str | None:
    """--overwrite: a previous export's files move into OUTPUT.replaced-DATE-TIME
    beside it (the folder itself, for a SavedModel); nothing is deleted. Returns where."""
    found = export_files(output, export_format)
    if not found:
        return None
    stem = output.rstrip(os.sep) if export_format == "savedmodel" else os.path.splitext(output)[0]
    base = aside = f"{stem}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
    suffix = 1
    while os.path.exists(aside):
        aside, suffix = f"{base}.{suffix}", suffix + 1
    if export_format == "savedmodel":
        os.replace(output, aside)
    else:
        os.makedirs(aside)
        for path in found:
            os.replace(path, os.path.join(aside, os.path.basename(path)))
    logging.warning("--overwrite: moved the previous export to %s", aside)
    return aside
