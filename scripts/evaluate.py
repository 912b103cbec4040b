"""Evaluate a trained run: student and teacher test error, the teacher's per-class

The `lcmt evaluate` command (lcmt_tf.cli.evaluate), run from a checkout: `python
scripts/evaluate.py --help` lists its flags.
"""

from lcmt_tf.cli.evaluate import main

if __name__ == "__main__":
    main()
