"""One training run: a run directory with results, checkpoints, the final model and ``done``."""
