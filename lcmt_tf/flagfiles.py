"""Flags -> TrainConfig: the flag files of the paper's settings, found by name, and the
one function that turns a training command's arguments into its configuration.

The flag files are package data (`lcmt_tf/flags/*.txt`; `flags/` in a checkout links
to them), so they install with the package. `--flagfile=X` means, in this order:
  1. the file X, relative to the working directory (or, inside a flag file, relative
     to the folder of the file that includes it);
  2. the installed setting named X (`digits`, `cifar10_4000_mt`, with or without .txt),
     when X names no folder.
Lines are read as absl reads them: blank lines and lines starting with # or // are
skipped, later flags override earlier ones, an included file is expanded in place.

`train_config(args)` is what the train command, `experiment` and the benchmarks call;
it raises UserInputError (one line) for anything wrong in the arguments.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from absl import flags

from lcmt_tf.config import TrainConfig
from lcmt_tf.errors import UserInputError

# The package's own flag files (package data, next to this module).
PACKAGED_FLAGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flags")
FLAG_FILE_DIRECTIVES = ("--flagfile", "-flagfile")


def packaged_settings() -> list[str]:
    """The names of the installed flag files, e.g. ['cifar10_2000', ..., 'svhn_500_mt']."""
    return sorted(
        name[: -len(".txt")] for name in os.listdir(PACKAGED_FLAGS_DIR) if name.endswith(".txt")
    )


def _is_bare_name(name: str) -> bool:
    return bool(name) and os.sep not in name and "/" not in name


def find_flag_file(name: str, including_dir: str | None = None) -> str:
    """The absolute path `--flagfile=name` means (rules: the module docstring); from a
    flag file in `including_dir`, relative names are relative to that folder."""
    path = os.path.expanduser(name)
    base = including_dir if including_dir is not None else os.getcwd()
    candidate = os.path.join(base, path)
    if os.path.isfile(candidate):
        return os.path.abspath(candidate)
    if os.path.isdir(candidate):
        raise UserInputError(
            f"--flagfile={name} is a folder; it names a flag file (one --flag=value per line) "
            "or an installed setting"
        )
    if _is_bare_name(path):
        packaged = os.path.join(PACKAGED_FLAGS_DIR, path.removesuffix(".txt") + ".txt")
        if os.path.isfile(packaged):
            return packaged
    where = f" (next to the file that includes it, {base})" if including_dir else ""
    raise UserInputError(
        f"--flagfile={name}: no such flag file{where}; installed settings, usable by name: "
        f"{', '.join(packaged_settings())}"
    )


def expand_flagfiles(args: Sequence[str], including_dir: str | None = None, _stack=()) -> list:
    """`args` with every --flagfile replaced, in place, by the flags its file holds
    (recursively; nested files resolve next to the file that includes them)."""
    expanded: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            expanded += [arg, *rest]
            break
        if arg in FLAG_FILE_DIRECTIVES:
            if not rest:
                raise UserInputError("--flagfile needs a file name")
            name = rest.pop(0)
        elif arg.startswith(tuple(f"{d}=" for d in FLAG_FILE_DIRECTIVES)):
            name = arg.partition("=")[2]
        else:
            expanded.append(arg)
            continue
        if not name:
            continue  # absl ignores an empty --flagfile=
        path = find_flag_file(name, including_dir)
        if path in _stack:
            chain = " -> ".join(os.path.basename(p) for p in (*_stack, path))
            raise UserInputError(f"flag files include each other: {chain}")
        expanded += expand_flagfiles(_flag_lines(path), os.path.dirname(path), (*_stack, path))
    return expanded


def _flag_lines(path: str) -> list[str]:
    try:
        with open(path) as file:
            lines = file.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UserInputError(f"cannot read the flag file {path} ({error})") from None
    return [
        line.strip() for line in lines if line.strip() and not line.lstrip().startswith(("#", "//"))
    ]


def define_config_flags(flag_values: flags.FlagValues) -> None:
    """One flag per TrainConfig field, with the field's default and help text."""
    for field in dataclasses.fields(TrainConfig):
        default, help_text = field.default, field.metadata["help"]
        if isinstance(default, bool):
            flags.DEFINE_boolean(field.name, default, help_text, flag_values=flag_values)
        elif isinstance(default, int):
            flags.DEFINE_integer(field.name, default, help_text, flag_values=flag_values)
        elif isinstance(default, float):
            flags.DEFINE_float(field.name, default, help_text, flag_values=flag_values)
        else:
            flags.DEFINE_string(field.name, default, help_text, flag_values=flag_values)


def config_from_flags(flag_values: flags.FlagValues) -> TrainConfig:
    """The validated TrainConfig of parsed flags (defined by define_config_flags)."""
    values = {
        field.name: flag_values[field.name].value for field in dataclasses.fields(TrainConfig)
    }
    return TrainConfig(**values).validate()


def parse_flag_args(flag_values: flags.FlagValues, program: str, args: Sequence[str]) -> list:
    """absl's parsing of `args` (flag files expanded first) into `flag_values`; returns
    the arguments that are not flags. absl's errors become a UserInputError."""
    try:
        return flag_values([program, *expand_flagfiles(args)])
    except flags.Error as error:
        raise UserInputError(str(error).splitlines()[0]) from None


def train_config(args: Sequence[str]) -> TrainConfig:
    """The validated TrainConfig that the train command resolves from `args`
    (e.g. ["--flagfile=digits", "--epochs=4"])."""
    flag_values = flags.FlagValues()
    define_config_flags(flag_values)
    rest = parse_flag_args(flag_values, "train", args)
    if len(rest) > 1:
        raise UserInputError(f"unexpected arguments {rest[1:]}; flags look like --name=value")
    return config_from_flags(flag_values)
