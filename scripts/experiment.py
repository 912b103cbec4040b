"""Experiments over settings, seeds and values, as ordinary resumable runs.

The `lcmt experiment` command (lcmt_tf.cli.experiment), run from a checkout: `python
scripts/experiment.py --help` lists its flags.
"""

from lcmt_tf.cli.experiment import main

if __name__ == "__main__":
    main()
