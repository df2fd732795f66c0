"""The data side of the step loop: step counts, training iterators from the start step,
and the split scorer."""

from dataclasses import dataclass
from typing import Any, List

from domainbed.lib.fast_data_loader import infinite_loader
from domainbed.training.evaluation_plan import policy_of_test_in
from domainbed.training.scoring import SplitScorer
from domainbed.training.setup import RunSetup


@dataclass
class Feeds:
    n_steps: int
    checkpoint_freq: int
    steps_per_epoch: float
    train_iters: List[Any]  # one infinite minibatch iterator per training env
    uda_iters: List[Any]  # one per unlabeled test split (domain adaptation)
    scorer: SplitScorer


def make_feeds(setup: RunSetup, start_step: int) -> Feeds:
    """The run's step counts (the dataset's defaults unless given), its loaders positioned
    at ``start_step`` (a resumed run draws the batches an uninterrupted one would) and its
    scorer."""
    config, dataset, splits = setup.config, setup.dataset, setup.splits
    n_steps = config.steps if config.steps is not None else dataset.N_STEPS
    checkpoint_freq = config.checkpoint_freq or dataset.CHECKPOINT_FREQ
    n_workers = min(dataset.N_WORKERS, config.num_workers if config.num_workers is not None
                    else dataset.N_WORKERS)
    batch_size = setup.hparams["batch_size"]
    train_iters = [infinite_loader(splits.in_splits[i][0], batch_size, config.seed, i,
                                   start_step, n_workers, splits.in_splits[i][1])
                   for i in setup.train_envs]
    uda_iters = [infinite_loader(split, batch_size, config.seed, 1000 + k, start_step,
                                 n_workers, w) for k, (split, w) in enumerate(splits.uda_splits)]
    scorer = SplitScorer(splits, len(dataset), setup.test_envs, n_workers, setup.device,
                         config.full_evaluation, config.seed,
                         policy_of_test_in(setup.test_envs, config.full_evaluation,
                                           config.score_test_once, setup.best.enabled))
    steps_per_epoch = min(len(splits.in_splits[i][0]) / batch_size for i in setup.train_envs)
    return Feeds(n_steps, checkpoint_freq, steps_per_epoch, train_iters, uda_iters, scorer)
