"""One training run: a run directory with results, checkpoints, the final model and ``done``.

The modules, in reading order:

- ``config``: ``TrainConfig``, the arguments of one run;
- ``validate``: every problem of a config, found before anything is written;
- ``job``: ``run_job(config)``, the typed call a launcher or the train script makes (logging,
  exit statuses);
- ``run``: ``train(config)``: the run directory's identity and lock, the stages in order,
  and the end of the run (final record, model, the selected record's test score, ``done``);
- ``setup``: names, hparams, dataset, splits, algorithm, arithmetic (``prepare_run``);
- ``start``: checkpoint files, resume, or a fresh start with ``--init_from``;
- ``loop``: the steps (loaders, updates, evaluation records, checkpoints, divergence);
- ``evaluation``: which splits each evaluation scores, the scorer, the best checkpoint.
"""

from domainbed.training.config import TrainConfig  # noqa: F401
