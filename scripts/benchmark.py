"""Steady-state training throughput of supervised, Mean Teacher and MT+LC steps.

The `lcmt benchmark` command (lcmt_tf.cli.benchmark), run from a checkout: `python
scripts/benchmark.py --help` lists its flags.
"""

from lcmt_tf.cli.benchmark import main

if __name__ == "__main__":
    main()
