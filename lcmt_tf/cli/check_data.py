"""What a run would train on, and what is wrong with it, before any training: counts
per class and split, image size, channel statistics, labeled images that are also in
the evaluation set. The train command's flags; the same as `train --check_data`.

    lcmt check-data --flagfile=digits --dataset=folder:PATH

Exit status 0 when nothing is wrong, 2 when a problem is found (one line each).
"""

from __future__ import annotations

from lcmt_tf import cli
from lcmt_tf.cli import train


def main() -> None:
    cli.run(train.train, lambda: train.define_flags(check_data=True), __doc__)


if __name__ == "__main__":
    main()
