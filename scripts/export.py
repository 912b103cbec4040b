"""Export a trained run's teacher for deployment, normalization built in: uint8

The `lcmt export` command (lcmt_tf.cli.export), run from a checkout: `python
scripts/export.py --help` lists its flags.
"""

from lcmt_tf.cli.export import main

if __name__ == "__main__":
    main()
