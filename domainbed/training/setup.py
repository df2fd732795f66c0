"""The setup of one run: names, hparams, dataset, splits, algorithm and arithmetic.

``prepare_run(config)`` (at the end of this file) checks the names, resolves the hparams,
seeds everything, builds the dataset, its splits, the algorithm on its device and its
arithmetic, and returns them as a ``RunSetup``; above it, the pieces it builds, in that
order: the names and hparams, the splits (``make_splits``), the training arithmetic
(``TrainingArithmetic``), what records say about ``--init_from`` (``init_info``), the
metadata of every model file (``model_metadata``) and the run's identity (``identity_of``,
checked against the run directory by ``run``).

Called by ``run.train``; next: ``start`` (where the run starts: its checkpoint, or fresh
with ``--init_from``).
"""

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from domainbed import algorithms, datasets, hparams_registry
from domainbed.errors import DomainBedError
from domainbed.lib import misc, run_dir
from domainbed.lib.device import get_device
from domainbed.lib.provenance import environment_info, environment_lines
from domainbed.training.config import TrainConfig
from domainbed.training.evaluation import BestCheckpoint

log = logging.getLogger("domainbed.train")


# ---------------------------------------------------------------- names and hparams

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


# ---------------------------------------------------------------- splits
# Per-environment in / out (validation) / uda splits, with un-augmented evaluation views.

@dataclass
class Splits:
    # (split dataset, sampling weights or None) per environment
    in_splits: List[Tuple[object, Optional[torch.Tensor]]] = field(default_factory=list)
    out_splits: List[Tuple[object, Optional[torch.Tensor]]] = field(default_factory=list)
    uda_splits: List[Tuple[object, Optional[torch.Tensor]]] = field(default_factory=list)
    # the same indices over the environment's evaluation view (never augmented)
    eval_in: List[object] = field(default_factory=list)
    eval_out: List[object] = field(default_factory=list)
    eval_uda: List[object] = field(default_factory=list)


def make_splits(dataset, test_envs, trial_seed: int, holdout_fraction: float,
                uda_holdout_fraction: float, class_balanced: bool,
                augmented_validation: bool = False) -> Splits:
    """Split every environment with ``seed_hash(trial_seed, env_i)`` as upstream does.

    ``augmented_validation`` reproduces upstream's known defect of scoring validation
    splits with training augmentation.
    """
    splits = Splits()
    for env_i, env in enumerate(dataset):
        out, in_ = misc.split_dataset(env, int(len(env) * holdout_fraction),
                                      misc.seed_hash(trial_seed, env_i))
        uda = None
        if env_i in test_envs:
            uda, in_ = misc.split_dataset(in_, int(len(in_) * uda_holdout_fraction),
                                          misc.seed_hash(trial_seed, env_i))
        view = env if augmented_validation else dataset.eval_view(env_i)

        def weights(split):
            return misc.make_weights_for_balanced_classes(split) if class_balanced else None

        splits.in_splits.append((in_, weights(in_)))
        splits.out_splits.append((out, weights(out)))
        splits.eval_out.append(out.with_dataset(view))
        # the in split of a test env sits inside an uda split: compose the index maps
        if uda is not None:
            inner = in_.underlying_dataset
            base = inner.with_dataset(view)
            splits.eval_in.append(misc._SplitDataset(base, in_.keys))
            if len(uda):
                splits.uda_splits.append((uda, weights(uda)))
                splits.eval_uda.append(misc._SplitDataset(base, uda.keys))
        else:
            splits.eval_in.append(in_.with_dataset(view))
    return splits


# ---------------------------------------------------------------- arithmetic
# Training arithmetic of a run: fp32 (default), or mixed precision, channels-last, cuDNN
# autotuning. Each is opt-in and recorded in the run's args; fp32 stays the default so
# that tables compare with published ones. Evaluations always run in fp32.

PRECISIONS = ("fp32", "bf16", "fp16")


class TrainingArithmetic:
    """``autocast()`` around each update; for fp16 a gradient scaler that ``ERM.step``
    uses (``algorithm.grad_scaler``), saved in the checkpoint so a resumed run repeats the
    uninterrupted one within a precision."""

    def __init__(self, precision: str, device: torch.device, channels_last: bool = False):
        if precision not in PRECISIONS:
            raise DomainBedError(f"unknown --precision {precision!r}; known: "
                                 f"{', '.join(PRECISIONS)}")
        if precision == "fp16" and device.type != "cuda":
            raise DomainBedError("--precision fp16 needs a CUDA GPU (its gradient scaler is "
                                 "for GPUs); on this device use --precision bf16 or fp32")
        self.precision = precision
        self.device = device
        self.channels_last = channels_last
        self.scaler: Optional[torch.amp.GradScaler] = None

    def prepare(self, algorithm) -> None:
        """Attach what the algorithm needs (memory format, gradient scaler)."""
        if self.channels_last:
            algorithm.to(memory_format=torch.channels_last)
        if self.precision == "fp16":
            if not callable(getattr(algorithm, "step", None)):
                raise DomainBedError(
                    f"--precision fp16 scales the loss in ERM.step, which "
                    f"{type(algorithm).__name__} does not use; use --precision bf16 (no "
                    "scaler needed) or fp32")
            self.scaler = torch.amp.GradScaler(self.device.type)
            algorithm.grad_scaler = self.scaler

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def state(self) -> Dict[str, Any]:
        return {"grad_scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load(self, state: Dict[str, Any]) -> None:
        if self.scaler is not None and state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])


def set_cudnn_benchmark(enabled: bool) -> None:
    """cuDNN autotuning (opt-in): faster kernels, no longer bitwise-repeatable."""
    if enabled:
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.deterministic = False


# ------------------------------------------------ what records and model files hold

def init_info(path: str) -> dict:
    """What a run records about its initialisation: the file and its ``init`` metadata."""
    from domainbed.lib.weights import read_metadata
    info = {"path": path}
    info.update(read_metadata(path).get("init", {}))
    return info


def model_metadata(args_record: Dict[str, Any], dataset, hparams: Dict[str, Any],
                   n_train_domains: int,
                   provenance: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The metadata saved with every model file of the run: what rebuilds the model, the
    dataset's class and environment names, its input pipeline, and where it was made."""
    from domainbed.datasets.input_spec import dataset_facts
    metadata = {"args": args_record, "model_input_shape": list(dataset.input_shape),
                "model_num_classes": dataset.num_classes, "model_num_domains": n_train_domains,
                "model_hparams": hparams}
    metadata.update(dataset_facts(dataset))
    if provenance is not None:
        metadata["provenance"] = provenance
    return metadata


# ---------------------------------------------------------------- the run's identity
# The arguments that define what a run computes: stored with its checkpoint, checked on
# every resume and against a finished run (``run.check_checkpoint``, ``run.check_done``).

# arguments that do not change what a run computes: paths, evaluation-only, performance and
# launcher flags (``init_from`` enters by file name: a moved folder keeps its runs)
NOT_IDENTITY = ("data_dir", "output_dir", "num_workers", "keep_checkpoint", "skip_model_save",
                "save_model_every_checkpoint", "full_evaluation", "score_test_once",
                "augmented_validation", "channels_last", "cudnn_benchmark")


def _hparams(value: Any) -> Any:
    if isinstance(value, str) and value:
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value or None


def identity_of(args: Mapping[str, Any]) -> Dict[str, Any]:
    """The identity of a run from its ``args`` record (``TrainConfig.as_record()``)."""
    identity = {k: v for k, v in args.items() if k not in NOT_IDENTITY}
    if identity.get("init_from"):
        identity["init_from"] = os.path.basename(str(identity["init_from"]))
    if "hparams" in identity:
        identity["hparams"] = _hparams(identity["hparams"])
    if "test_envs" in identity and identity["test_envs"] is not None:
        identity["test_envs"] = [int(t) for t in identity["test_envs"]]
    return identity


# ---------------------------------------------------------------- the setup

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
    identity: Optional[Dict[str, Any]] = None  # stored with the checkpoint (identity_of)

    @property
    def out_dir(self) -> str:
        return self.config.output_dir

    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.out_dir, run_dir.CHECKPOINT)

    @property
    def results_path(self) -> str:
        return os.path.join(self.out_dir, run_dir.RESULTS)


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
