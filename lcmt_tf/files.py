"""Files written atomically: each to a temporary name in the same folder, then renamed
over the previous copy (atomic on POSIX), so a kill during a write leaves the previous
copy readable. The new file gets the user's umask, like any other tool's output."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str, write) -> None:
    """Calls write(temporary_path), then renames it to `path` (atomic on POSIX)."""
    directory = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1]
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    os.close(handle)
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it 0600
        write(temporary)
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def atomic_write_json(path: str, value: Any) -> None:
    def write(temporary):
        with open(temporary, "w") as file:
            json.dump(value, file, indent=2, sort_keys=True)
            file.write("\n")

    atomic_write(path, write)


def atomic_write_text(path: str, text: str) -> None:
    def write(temporary):
        with open(temporary, "w") as file:
            file.write(text)

    atomic_write(path, write)


def atomic_write_csv(path: str, columns: Sequence[str], rows: Sequence[dict]) -> None:
    """Writes `rows` (dicts) as CSV with `columns`, lists joined by spaces, atomically."""

    def write(temporary):
        with open(temporary, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(columns)
            for row in rows:
                values = (row.get(column) for column in columns)
                writer.writerow(
                    [" ".join(map(str, v)) if isinstance(v, list) else v for v in values]
                )

    atomic_write(path, write)
