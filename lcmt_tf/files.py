"""Files written atomically: each to a temporary name in the same folder, then renamed
over the previous copy (atomic on POSIX), so a kill during a write leaves the previous
copy readable. The new file gets the user's umask, like any other tool's output."""

from __future__ import annotations

import csv
import errno
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


TEMPORARY_PREFIX = ".tmp-"


def atomic_write(path: str, write) -> None:
    """Calls write(temporary_path), then renames it to `path` (atomic on POSIX). A
    process killed in between leaves only a temporary file (TEMPORARY_PREFIX...), which
    remove_temporaries clears."""
    directory = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1]
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=TEMPORARY_PREFIX, suffix=suffix)
    os.close(handle)
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it 0600
        write(temporary)
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        from lcmt_tf.errors import UserInputError

        kept = (
            f"the previous {os.path.basename(path)} is kept"
            if os.path.exists(path)
            else ("nothing was written")
        )
        raise UserInputError(
            f"out of disk space writing {path}: {kept}, nothing is half-written; free space "
            "and rerun the same command"
        ) from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def remove_temporaries(directory: str) -> list[str]:
    """Removes the temporary files that an atomic_write killed before its rename left in
    `directory` (for its owner to call while no other process writes there); returns
    their names."""
    names = sorted(
        name
        for name in os.listdir(directory)
        if name.startswith(TEMPORARY_PREFIX) and os.path.isfile(os.path.join(directory, name))
    )
    for name in names:
        os.remove(os.path.join(directory, name))
    return names


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


def check_output_path(
    path: str, flag: str, directory: bool = False, overwrite: bool = True
) -> None:
    """Raises UserInputError (one line, naming `flag`) unless `path` can be written: its
    folder exists and is writable, and it is not a folder where a file goes (nor a
    file where a folder goes). Without `overwrite`, an existing file or non-empty
    folder is refused too. For the commands to check before any work starts."""
    from lcmt_tf.errors import UserInputError

    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UserInputError(f"{flag}={path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UserInputError(f"{flag}={path}: the folder {parent} is not writable")
    if directory and os.path.isfile(path):
        raise UserInputError(f"{flag}={path} is a file; it names a folder to write")
    if not directory and os.path.isdir(path):
        raise UserInputError(f"{flag}={path} is a folder; it names a file to write")
    exists = os.path.isfile(path) or (os.path.isdir(path) and os.listdir(path))
    if exists and not overwrite:
        raise UserInputError(
            f"{flag}={path} already exists; choose another, or pass --overwrite to replace it"
        )
