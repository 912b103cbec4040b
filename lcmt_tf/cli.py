"""What every command in scripts/ does alike: a mistake the user can fix (a flag, a
path, the data) ends with one line `PROGRAM: error: ...` on stderr and exit status 2,
never a stack trace."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from absl import app, flags

from lcmt_tf.errors import UserInputError


def program() -> str:
    return os.path.basename(sys.argv[0]) or "lcmt_tf"


def fail(message: str) -> None:
    print(f"{program()}: error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with its errors as one line."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        fail(str(error).splitlines()[0])


def check_run_arguments(argv: list[str], model_dir: str | None, purpose: str) -> None:
    """The checks every command on a run directory starts with, before a backend
    starts: no stray arguments, and --model_dir names a trained run."""
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    if not model_dir:
        fail(f"--model_dir is required: the run directory to {purpose}")
    from lcmt_tf.run_files import run_weights

    run_weights(model_dir)


def run(main: Callable[[list[str]], None]) -> None:
    """absl.app.run(main); a UserInputError that main raises becomes one line, exit 2."""

    def guarded(argv: list[str]) -> None:
        try:
            main(argv)
        except UserInputError as error:
            fail(str(error))

    app.run(guarded, flags_parser=parse_flags)
