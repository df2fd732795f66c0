"""``TrainConfig``: the arguments of one training run, as a typed dataclass.

Its fields are the flags of ``python -m domainbed.scripts.train``: each field declares its
flag's help text and choices (``domainbed.lib.options.option``), and that script's parser is
generated from them (same names, types and defaults). The CLI builds one from its
argparse namespace; library code (the linear probe, benchmarks, the sweep's in-process
runs) builds one directly, or from a sweep job's argument dict. ``as_record()`` is what the
run writes as ``args`` (results.jsonl, model metadata, the "Args:" log line): exactly the
dict ``vars(namespace)`` gave before, so records stay byte-identical.

Torch-free.
"""

import dataclasses
import difflib
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from domainbed.errors import DomainBedError
from domainbed.lib.options import field_types, flag_of, option, option_fields

TASKS = ("domain_generalization", "domain_adaptation")
INIT_PARTS = ("all", "both", "featurizer", "classifier")
PRECISIONS = ("fp32", "bf16", "fp16")


def default_data_dir() -> str:
    """``$DOMAINBED_DATA``, else ``./data`` (read when a config is made)."""
    return os.environ.get("DOMAINBED_DATA", "./data")


@dataclass
class TrainConfig:
    """One training run's arguments; see ``domainbed.scripts.train --help``."""

    data_dir: str = option(default_factory=default_data_dir,
                           help="root folder of the datasets (default: $DOMAINBED_DATA or "
                                "./data)")
    dataset: str = option("RotatedMNIST")
    algorithm: str = option("ERM")
    task: str = option("domain_generalization", choices=TASKS)
    hparams: Optional[str] = option(None, help="JSON object of hyperparameters that override "
                                               "the draw")
    hparams_seed: int = option(0, help="0 = default hyperparameters, else a seeded random draw")
    hparams_space: str = option("upstream", help="distributions of the random draw: upstream "
                                                 "or mild (the paper's)")
    trial_seed: int = option(0, help="seed of the data splits and, with hparams_seed, of the "
                                     "draw")
    seed: int = option(0, help="seed of everything else")
    steps: Optional[int] = option(None, help="number of steps (default: the dataset's N_STEPS)")
    checkpoint_freq: Optional[int] = option(None, help="evaluate and checkpoint every N steps "
                                                       "(default: the dataset's)")
    test_envs: List[int] = option(default_factory=lambda: [0],
                                  help="test environments; -1 = none (every domain trains)")
    output_dir: str = option("train_output")
    holdout_fraction: float = option(0.2)
    uda_holdout_fraction: float = option(0.0, help="fraction of the test env given as "
                                                   "unlabeled data (domain_adaptation)")
    skip_model_save: bool = option(False)
    save_model_every_checkpoint: bool = option(False)
    init_from: Optional[str] = option(
        None, metavar="PATH",
        help="initialise from a weight file (ours, a pool member, or upstream's model.pkl); "
             "shapes are checked")
    init_part: str = option("all", choices=INIT_PARTS,
                            help="which part --init_from loads (all = whatever the file holds)")
    augmented_validation: bool = option(
        False, help="legacy: score validation splits WITH training augmentation, as upstream "
                    "DomainBed does")
    num_workers: Optional[int] = option(None, help="data loader workers (default: the "
                                                   "dataset's N_WORKERS)")
    keep_checkpoint: bool = option(False, help="keep checkpoint.safetensors after the run is "
                                               "done")
    full_evaluation: bool = option(
        False, help="score every split at every evaluation, as upstream (default: the splits "
                    "model selection reads, and every split at the last step; the selected "
                    "checkpoints and table cells are the same)")
    score_test_once: bool = option(
        False, help="score the test env's in split only for the record that training-domain "
                    "validation selects, once, after training, from model_best.safetensors "
                    "(default: at every evaluation, which leave-one-domain-out selection "
                    "reads when the sweep has runs with two test envs); for runs no such "
                    "selection reads, e.g. the recipe's target runs")
    precision: str = option(
        "fp32", choices=PRECISIONS,
        help="training arithmetic: fp32 (default, comparable with published tables), or "
             "mixed precision with bf16 / fp16 autocast (fp16 with a gradient scaler; GPU)")
    channels_last: bool = option(False, help="channels-last memory format for image models "
                                             "(faster convolutions on recent GPUs)")
    cudnn_benchmark: bool = option(
        False, help="let cuDNN autotune its kernels (faster on a GPU; a resumed run is then no "
                    "longer bitwise equal to an uninterrupted one)")

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
    def from_namespace(cls, ns: Any) -> "TrainConfig":
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


# the fields whose flag takes one of a few values (name -> the values), and each field's
# (item type, is a list), both read from the fields' declarations
_CHOICES: Dict[str, Tuple[str, ...]] = {f.name: flag_of(f).choices
                                        for f in option_fields(TrainConfig)
                                        if flag_of(f).choices is not None}
_TYPES: Dict[str, Tuple[type, bool]] = field_types(TrainConfig)


def _convert(name: str, value: Any) -> Any:
    """``value`` as the parser would give it back from ``train_flags``' rendering."""
    item, many = _TYPES[name]
    try:
        if item is bool:
            if value is not True:
                raise ValueError("a flag takes True (given) or False/None (not given)")
            return True
        if many:
            items = value if isinstance(value, (list, tuple)) else [value]
            return [item(str(v)) for v in items]
        if name == "hparams" and isinstance(value, dict):
            return json.dumps(value, sort_keys=True)
        return item(str(value))
    except ValueError as exc:
        raise DomainBedError(f"training argument {name}={value!r}: {exc}") from None
