"""Experiments over settings, seeds and values, as ordinary resumable runs: the paper's
Table I (`table`), its sweeps (`sweep`, Figures 4-5), test-error curves (`curves`,
Figure 3) and t-SNE maps (`tsne`, Figures 6-7). `scripts/experiment.py` is their
command line; `runner` trains the runs, `statistics` and `plots` serve them all."""
