"""A split of a registered dataset's environment, exactly as the model's training split it.

``in`` and ``out`` are the core's splits (``training.setup.make_splits``) with the trial
seed, holdout fractions and test environments that ``config.json`` records, so ``in`` of
the test environment is the split every Table 1 row reports; ``all`` is the whole
environment. Every split is read through the dataset's evaluation view (no augmentation).
"""

from typing import Any, Mapping, Optional, Tuple

from domainbed.errors import DomainBedError
from domainbed.model_folder.config import ModelFolderError, environment_index

SPLITS = ("in", "out", "all")


def trial_seed_of(config: Mapping[str, Any], trial_seed: Optional[int]) -> int:
    """``trial_seed``, else the one trial seed the model's runs used."""
    seeds = list(config["splits"].get("trial_seeds") or [])
    if trial_seed is not None:
        return int(trial_seed)
    if len(seeds) != 1:
        raise ModelFolderError(f"the model averages runs of trial seeds {seeds}, each with "
                               "its own in/out split; choose one with --trial_seed")
    return int(seeds[0])


def dataset_hparams(config: Mapping[str, Any]) -> dict:
    """The hparams a dataset needs to prepare inputs as the model's training did."""
    hparams = dict(config["network"]["hparams"])
    hparams.update(config.get("dataset_hparams") or {})
    return hparams


def _check_labels(config: Mapping[str, Any], dataset, name: str) -> None:
    from domainbed.datasets.input_spec import class_names
    if dataset.num_classes != config["num_classes"]:
        raise ModelFolderError(f"{name} has {dataset.num_classes} classes, the model "
                               f"{config['num_classes']}; predict on data with the model's "
                               "classes")
    names = class_names(dataset)
    if names != [str(i) for i in range(dataset.num_classes)] and names != config["class_names"]:
        raise ModelFolderError(f"{name}'s classes {names} are not the model's "
                               f"{config['class_names']} in the same order: labels would be "
                               "misread")


def _dataset_class(name: str):
    """The class of dataset ``name``: the core's without loading any extension (so predict
    on a core dataset imports nothing from them), else through the plugins."""
    from domainbed import datasets
    from domainbed.datasets.registry import is_folder_dataset
    from domainbed.datasets.base import DATASET_REGISTRY
    if not is_folder_dataset(name) and name in DATASET_REGISTRY:
        return DATASET_REGISTRY.get(name)
    try:
        return datasets.get_dataset_class(name)
    except KeyError as exc:
        raise DomainBedError(f"{exc.args[0]} (--dataset)") from None


def dataset_split(config: Mapping[str, Any], data_dir: Optional[str], env: str,
                  split: str = "in", trial_seed: Optional[int] = None,
                  dataset_name: Optional[str] = None) -> Tuple[Any, str]:
    """``(split dataset, description)`` of environment ``env`` (index or name) of the
    model's dataset (or ``dataset_name``)."""
    from domainbed.training.setup import make_splits
    if split not in SPLITS:
        raise DomainBedError(f"unknown --split {split!r}; known: {', '.join(SPLITS)}")
    name = dataset_name or config["dataset"]
    dataset_class = _dataset_class(name)
    test_envs = list(config.get("test_envs") or [])
    dataset = dataset_class(data_dir, test_envs, dataset_hparams(config))
    _check_labels(config, dataset, name)
    index = environment_index({"dataset": name, "environments": list(dataset.ENVIRONMENTS)},
                              env)
    label = f"{name} env {index} ({dataset.ENVIRONMENTS[index]})"
    if split == "all":
        return dataset.eval_view(index), f"{label}, every example"
    seed = trial_seed_of(config, trial_seed)
    s = config["splits"]
    splits = make_splits(dataset, test_envs, seed, s["holdout_fraction"],
                         s.get("uda_holdout_fraction", 0.0), False)
    view = splits.eval_in[index] if split == "in" else splits.eval_out[index]
    return view, f"{label}, {split} split of trial seed {seed}"
