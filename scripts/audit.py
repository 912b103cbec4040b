"""Audit a run's unlabeled pool.

The `lcmt audit` command (lcmt_tf.cli.audit), run from a checkout: `python
scripts/audit.py --help` lists its flags.
"""

from lcmt_tf.cli.audit import main

if __name__ == "__main__":
    main()
