"""The setup of one run: names, hparams, dataset, splits, algorithm and arithmetic."""

import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch

from domainbed import algorithms, datasets, hparams_registry
from domainbed.errors import DomainBedError
from domainbed.lib import misc, run_dir
from domainbed.lib.device import get_device
from domainbed.lib.provenance import environment_info, environment_lines
from domainbed.training.best import BestCheckpoint
from domainbed.training.config import TrainConfig
from domainbed.training.identity import identity_of
from domainbed.training.init_from import init_info
from domainbed.training.precision import TrainingArithmetic, set_cudnn_benchmark
from domainbed.training.records import model_metadata
from domainbed.training.splits import make_splits

log = logging.getLogger("domainbed.train")


@dataclass
class RunSetup:
    """Everything a run builds before its first step (before resuming)."""

    config: TrainConfig
    args_record: Dict[str, Any]  # the ``args`` of every record and model file
    device: torch.device
    hparams: Dict[str, Any]
    dataset: Any
    test_envs: List[int]
    train_envs: List[int]
    splits: Any
    algorithm: Any
    arithmetic: TrainingArithmetic
    init: Optional[dict]  # the ``init`` of every record (--init_from), else None
    metadata: Dict[str, Any]
    best: BestCheckpoint
    identity: Optional[Dict[str, Any]] = None  # stored with the checkpoint (identity.py)

    @property
    def out_dir(self) -> str:
        return self.config.output_dir

    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.out_dir, run_dir.CHECKPOINT)

    @property
    def results_path(self) -> str:
        return os.path.join(self.out_dir, run_dir.RESULTS)


def resolve_hparams(config: TrainConfig) -> dict:
    """The run's hparams: the registry's draw, updated with the ``--hparams`` JSON."""
    hparams = hparams_registry.get_hparams(config.algorithm, config.dataset,
                                           config.hparams_seed, config.trial_seed,
                                           config.hparams_space)
    if config.hparams:
        try:
            overrides = json.loads(config.hparams)
        except ValueError as exc:
            raise DomainBedError(f"--hparams is not valid JSON ({exc}); example: "
                                 "--hparams '{\"lr\": 1e-4}'") from None
        if not isinstance(overrides, dict):
            raise DomainBedError("--hparams must be a JSON object, e.g. '{\"lr\": 1e-4}'")
        hparams_registry.check_hparams_keys(config.algorithm, config.dataset, overrides,
                                            space=config.hparams_space)
        hparams.update(overrides)
    return hparams


def check_names(config: TrainConfig) -> None:
    """A DomainBedError naming the flag when the dataset or algorithm is unknown."""
    for kind, getter in (("dataset", datasets.get_dataset_class),
                         ("algorithm", algorithms.get_algorithm_class)):
        try:
            getter(getattr(config, kind))
        except KeyError as exc:
            raise DomainBedError(f"{exc.args[0]} (--{kind})") from None


def resolve_test_envs(config: TrainConfig, n_envs: int) -> List[int]:
    """``--test_envs`` checked against the dataset; ``[-1]`` means none."""
    test_envs = [] if list(config.test_envs) == [-1] else list(config.test_envs)
    for env in test_envs:
        if not 0 <= env < n_envs:
            raise DomainBedError(
                f"--test_envs {env} is out of range: {config.dataset} has {n_envs} "
                f"environments (0..{n_envs - 1}); use -1 for no test environment")
    return test_envs


def prepare_run(config: TrainConfig) -> RunSetup:
    """Check the names, seed everything, log the run's args, build the dataset, its
    splits, the algorithm on its device and its arithmetic (in this order: the seeds and
    so the results depend on it)."""
    check_names(config)
    device = get_device()
    hparams = resolve_hparams(config)
    misc.seed_everything(config.seed)
    set_cudnn_benchmark(config.cudnn_benchmark)
    args_record = config.as_record()
    for line in environment_lines(device):
        log.info("%s", line)
    log.info("Args: %s", json.dumps(args_record, sort_keys=True))
    log.info("HParams: %s", json.dumps(hparams, sort_keys=True))
    log.info("Device: %s", device)

    dataset_class = datasets.get_dataset_class(config.dataset)
    test_envs = resolve_test_envs(config, len(dataset_class.environments(config.data_dir)))
    dataset = dataset_class(config.data_dir, test_envs, hparams)
    if config.task == "domain_adaptation" and not config.uda_holdout_fraction:
        raise DomainBedError("--task domain_adaptation needs --uda_holdout_fraction > 0")
    uda_fraction = config.uda_holdout_fraction if config.task == "domain_adaptation" else 0.0
    splits = make_splits(dataset, test_envs, config.trial_seed, config.holdout_fraction,
                         uda_fraction, hparams["class_balanced"], config.augmented_validation)
    train_envs = [i for i in range(len(dataset)) if i not in test_envs]
    if not train_envs:
        raise DomainBedError("every environment is a test environment: nothing to train on")

    algorithm_class = algorithms.get_algorithm_class(config.algorithm)
    algorithm = algorithm_class(dataset.input_shape, dataset.num_classes, len(train_envs),
                                hparams)
    algorithm.to(device)
    arithmetic = TrainingArithmetic(config.precision, device, config.channels_last)
    arithmetic.prepare(algorithm)

    init = init_info(config.init_from) if config.init_from else None
    metadata = model_metadata(args_record, dataset, hparams, len(train_envs),
                              environment_info(device))
    best = BestCheckpoint(os.path.join(config.output_dir, run_dir.MODEL_BEST), metadata,
                          enabled=algorithm.BEST_CHECKPOINT and not config.skip_model_save)
    return RunSetup(config, args_record, device, hparams, dataset, test_envs, train_envs,
                    splits, algorithm, arithmetic, init, metadata, best,
                    identity_of(args_record))
