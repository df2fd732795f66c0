"""One training run: a run directory with results, checkpoints, the final model and ``done``."""

from domainbed.training.config import TrainConfig  # noqa: F401
