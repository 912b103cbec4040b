"""The reference tables that must not drift from the code, generated from it and
committed between `<!-- generated: NAME -->` and `<!-- end generated: NAME -->`:

    train-flags     every training flag: TrainConfig's fields, their defaults and help
    command-flags   the flags of every other command, as each command defines them
    flag-files      the installed flag files, resolved the way `lcmt train` resolves them

    python docs/hooks.py        # write the tables again into the pages that hold them

The tables are committed so that a page reads the same on GitHub and in a checkout;
tests/test_docs.py checks that they are current, and as an MkDocs hook (mkdocs.yml names
this file under `hooks:`) a page whose tables are not current fails `mkdocs build`.
"""

from __future__ import annotations

import dataclasses
import importlib
import re

MARKER = re.compile(
    r"<!-- generated: ([a-z-]+) -->\n.*?<!-- end generated: \1 -->", flags=re.DOTALL
)
PAGES = ("command-line.md",)


def _cell(value) -> str:
    """A value or a help text as one Markdown table cell."""
    if value is None or value == "":
        value = "none" if value is None else "''"
    text = " ".join(str(value).split())
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def train_flags() -> str:
    from lcmt_tf.config import TrainConfig

    rows = [
        ("flagfile", "", "a flag file, or an installed setting's name (flag files below)"),
        ("dry_run", False, "print the resolved configuration as JSON and exit"),
        ("check_data", False, "print a summary of the data and its problems, and exit"),
    ]
    rows += [
        (field.name, field.default, field.metadata["help"])
        for field in dataclasses.fields(TrainConfig)
    ]
    lines = ["| flag | default | meaning |", "|---|---|---|"]
    lines += [f"| `--{name}` | `{_cell(value)}` | {_cell(text)} |" for name, value, text in rows]
    return "\n".join(lines)


def command_flags() -> str:
    """A section per command but train, its flags as its define_flags() defines them."""
    from absl import flags

    from lcmt_tf.cli.main import COMMANDS

    sections = []
    for command, (module_name, summary) in COMMANDS.items():
        if module_name in ("train", "check_data"):
            continue
        module = importlib.import_module(f"lcmt_tf.cli.{module_name}")
        before = set(flags.FLAGS)
        module.define_flags()
        defined = sorted(set(flags.FLAGS) - before)
        lines = [f"### `lcmt {command}`", "", f"{summary[0].upper()}{summary[1:]}.", ""]
        lines += ["| flag | default | meaning |", "|---|---|---|"]
        for name in defined:
            flag = flags.FLAGS[name]
            default = ",".join(flag.default) if isinstance(flag.default, list) else flag.default
            lines.append(f"| `--{name}` | `{_cell(default)}` | {_cell(flag.help)} |")
        for name in defined:  # the next command may define a flag of the same name
            delattr(flags.FLAGS, name)
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


def flag_files() -> str:
    from lcmt_tf.flagfiles import packaged_settings, train_config

    columns = (
        "method", "dataset", "num_labels", "model", "epochs", "lr_decay_epochs", "ema_decay",
        "consistency_weight", "lc_weight", "lc_start_epoch", "lc_rampup_epochs", "lc_epsilon",
    )  # fmt: skip
    lines = [
        "| setting | " + " | ".join(f"`{name}`" for name in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name in packaged_settings():
        if name.endswith("_common"):  # included by the others, not a setting of its own
            continue
        config = train_config([f"--flagfile={name}"]).to_dict()
        cells = {c: _cell(config[c]) for c in columns}
        if config["lc_weight"] and config["lc_epsilon_quantile"]:  # ε measured at LC's start
            cells["lc_epsilon"] = f"{config['lc_epsilon_quantile']:g}-quantile at LC's start"
        if config["lc_weight"] and config["lc_epsilon_batch_quantile"]:  # ε from each batch
            cells["lc_epsilon"] = f"{config['lc_epsilon_batch_quantile']:g}-quantile per batch"
        lines.append(f"| `{name}` | " + " | ".join(cells.values()) + " |")
    return "\n".join(lines)


GENERATORS = {"train-flags": train_flags, "command-flags": command_flags, "flag-files": flag_files}


def current(markdown: str, where: str = "page") -> str:
    """The page with its generated tables made from the code as it is now."""

    def generate(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"{where}: no generator named {name!r}")
        return f"<!-- generated: {name} -->\n{GENERATORS[name]()}\n<!-- end generated: {name} -->"

    return MARKER.sub(generate, markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if current(markdown, page.file.src_path) != markdown:
        raise ValueError(
            f"{page.file.src_path}: its generated tables are not current; run: python docs/hooks.py"
        )
    return markdown


if __name__ == "__main__":
    import os

    for name in PAGES:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
        with open(path) as file:
            text = file.read()
        with open(path, "w") as file:
            file.write(current(text, name))
