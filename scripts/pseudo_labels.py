"""A run's confident teacher labels and its calibration.

The `lcmt pseudo-labels` command (lcmt_tf.cli.pseudo_labels), run from a checkout: `python
scripts/pseudo_labels.py --help` lists its flags.
"""

from lcmt_tf.cli.pseudo_labels import main

if __name__ == "__main__":
    main()
