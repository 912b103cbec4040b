"""`lcmt COMMAND [flags]` (and `python -m lcmt_tf COMMAND`): runs one command of
lcmt_tf.cli with the rest of the arguments. `lcmt COMMAND --help` shows its flags."""

from __future__ import annotations

import importlib
import os
import sys

import lcmt_tf

# Command name -> module of lcmt_tf.cli, with its one-line summary.
COMMANDS = {
    "train": ("train", "train Mean Teacher + Local Clustering (or resume a run)"),
    "check-data": ("check_data", "summarize the data a run would train on, and its problems"),
    "experiment": ("experiment", "tables, sweeps, curves and t-SNE over many runs"),
    "evaluate": ("evaluate", "test errors, per-class accuracy and calibration of a run"),
    "predict": ("predict", "classify image files with a run's teacher (CSV)"),
    "rank": ("rank", "rank a run's unlabeled images for labeling (CSV)"),
    "pseudo-labels": ("pseudo_labels", "a run's confident teacher labels, and its calibration"),
    "audit": ("audit", "class mix, out-of-class images and test leakage of the unlabeled pool"),
    "export": ("export", "a run's teacher as a SavedModel or ONNX file"),
    "benchmark": ("benchmark", "training throughput of the supervised, MT and MT+LC steps"),
    "check-devices": ("check_devices", "the devices Keras sees and what a run trains on"),
}


def usage() -> str:
    lines = [f"usage: lcmt COMMAND [flags]   (lcmt_tf {lcmt_tf.__version__})", "", "commands:"]
    lines += [f"  {name:12s} {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "lcmt COMMAND --help lists a command's flags."]
    return "\n".join(lines)


def main() -> None:
    program = os.path.basename(sys.argv[0])
    if program in ("__main__.py", "main.py"):
        program = "lcmt"
    arguments = sys.argv[1:]
    if not arguments or arguments[0] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0 if arguments else 2)
    if arguments[0] == "--version":
        print(f"lcmt_tf {lcmt_tf.__version__}")
        return
    name = arguments[0].replace("_", "-")
    if name not in COMMANDS:
        print(
            f"{program}: error: unknown command {arguments[0]!r}; commands: "
            f"{', '.join(COMMANDS)} (lcmt --help)",
            file=sys.stderr,
        )
        sys.exit(2)
    module = importlib.import_module(f"lcmt_tf.cli.{COMMANDS[name][0]}")
    sys.argv = [f"{program} {name}", *arguments[1:]]
    module.main()


if __name__ == "__main__":
    main()
