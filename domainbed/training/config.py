"""``TrainConfig``: the arguments of one training run, as a typed dataclass.

Its fields are the flags of ``python -m domainbed.scripts.train`` (same names, types and
defaults; the help texts stay in that script's parser). The CLI builds one from its
argparse namespace; library code (the linear probe, benchmarks, the sweep's in-process
runs) builds one directly, or from a sweep job's argument dict. ``as_record()`` is what the
run writes as ``args`` (results.jsonl, model metadata, the "Args:" log line): exactly the
dict ``vars(namespace)`` gave before, so records stay byte-identical.

Torch-free.
"""

import argparse
import dataclasses
import difflib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from domainbed.errors import DomainBedError

TASKS = ("domain_generalization", "domain_adaptation")
INIT_PARTS = ("all", "both", "featurizer", "classifier")
PRECISIONS = ("fp32", "bf16", "fp16")
_CHOICES = {"task": TASKS, "init_part": INIT_PARTS, "precision": PRECISIONS}


def default_data_dir() -> str:
    """``$DOMAINBED_DATA``, else ``./data`` (read when a config is made)."""
    return os.environ.get("DOMAINBED_DATA", "./data")


@dataclass
class TrainConfig:
    """One training run's arguments; see ``domainbed.scripts.train --help``."""

    data_dir: str = field(default_factory=default_data_dir)
    dataset: str = "RotatedMNIST"
    algorithm: str = "ERM"
    task: str = "domain_generalization"
    hparams: Optional[str] = None
    hparams_seed: int = 0
    hparams_space: str = "upstream"
    trial_seed: int = 0
    seed: int = 0
    steps: Optional[int] = None
    checkpoint_freq: Optional[int] = None
    test_envs: List[int] = field(default_factory=lambda: [0])
    output_dir: str = "train_output"
    holdout_fraction: float = 0.2
    uda_holdout_fraction: float = 0.0
    skip_model_save: bool = False
    save_model_every_checkpoint: bool = False
    init_from: Optional[str] = None
    init_part: str = "all"
    augmented_validation: bool = False
    num_workers: Optional[int] = None
    keep_checkpoint: bool = False
    full_evaluation: bool = False
    score_test_once: bool = False
    precision: str = "fp32"
    channels_last: bool = False
    cudnn_benchmark: bool = False

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise DomainBedError(f"--{name} {value!r} is not one of "
                                     f"{', '.join(allowed)}")

    @classmethod
    def field_names(cls) -> List[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> "TrainConfig":
        """The config of a parsed ``domainbed.scripts.train`` command line (a namespace of
        an older caller may lack the newer flags: they take their defaults)."""
        given = vars(ns)
        _check_keys(given)
        return cls(**given)

    @classmethod
    def from_train_args(cls, train_args: Mapping[str, Any]) -> "TrainConfig":
        """The config of a sweep job's argument dict, as the job's command line would parse
        (``domainbed.sweep.jobs.train_flags``): None and False mean "flag not given", a dict
        of hparams is JSON (sorted keys), values are converted to the field's type. An
        unknown key raises DomainBedError naming the closest field."""
        _check_keys(train_args)
        values: Dict[str, Any] = {}
        for name, value in train_args.items():
            if value is None or value is False:
                continue
            values[name] = _convert(name, value)
        return cls(**values)

    def as_record(self) -> Dict[str, Any]:
        """The run's ``args`` record: every field by name (a fresh dict, lists copied)."""
        return {f.name: _copy(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def _check_keys(given: Mapping[str, Any]) -> None:
    known = TrainConfig.field_names()
    for key in given:
        if key not in known:
            closest = difflib.get_close_matches(key, known, n=1, cutoff=0.0)
            hint = f"; did you mean {closest[0]!r}?" if closest else ""
            raise DomainBedError(f"unknown training argument {key!r}{hint}")


_INT_FIELDS = {"hparams_seed", "trial_seed", "seed", "steps", "checkpoint_freq",
               "num_workers"}
_FLOAT_FIELDS = {"holdout_fraction", "uda_holdout_fraction"}
_BOOL_FIELDS = {"skip_model_save", "save_model_every_checkpoint", "augmented_validation",
                "keep_checkpoint", "full_evaluation", "score_test_once", "channels_last",
                "cudnn_benchmark"}


def _convert(name: str, value: Any) -> Any:
    """``value`` as the parser would give it back from ``train_flags``' rendering."""
    try:
        if name in _BOOL_FIELDS:
            if value is not True:
                raise ValueError("a flag takes True (given) or False/None (not given)")
            return True
        if name == "test_envs":
            items = value if isinstance(value, (list, tuple)) else [value]
            return [int(str(v)) for v in items]
        if name == "hparams" and isinstance(value, dict):
            return json.dumps(value, sort_keys=True)
        if name in _INT_FIELDS:
            return int(str(value))
        if name in _FLOAT_FIELDS:
            return float(str(value))
        return str(value)
    except ValueError as exc:
        raise DomainBedError(f"training argument {name}={value!r}: {exc}") from None
