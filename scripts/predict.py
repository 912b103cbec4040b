"""Predict classes of new images with a trained run's teacher.

The `lcmt predict` command (lcmt_tf.cli.predict), run from a checkout: `python
scripts/predict.py --help` lists its flags.
"""

from lcmt_tf.cli.predict import main

if __name__ == "__main__":
    main()
