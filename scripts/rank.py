"""Rank a run's unlabeled images for labeling.

The `lcmt rank` command (lcmt_tf.cli.rank), run from a checkout: `python
scripts/rank.py --help` lists its flags.
"""

from lcmt_tf.cli.rank import main

if __name__ == "__main__":
    main()
