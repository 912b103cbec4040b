"""Train Mean Teacher + Local Clustering.

The `lcmt train` command (lcmt_tf.cli.train), run from a checkout: `python
scripts/train.py --help` lists its flags.
"""

from lcmt_tf.cli.train import main

if __name__ == "__main__":
    main()
