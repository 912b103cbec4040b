"""The run directory: everything a run keeps on disk, and the rules for it.

layout.py      the names of its files, its snapshots, where a trained run's weights are
checkpoint.py  the training state (resume after every epoch, snapshots for forks)
fork.py        starting a run from another run's state (the paper's LC protocol)
lifecycle.py   checking a directory before a run, starting it, writing its final files
"""
