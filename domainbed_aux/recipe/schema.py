"""The recipe file's schema, as data: every key at every level, its type, range, whether it
is required, and the keys of its sections. To add a recipe key, add one line here (and read
it where the recipe is planned); ``validate.recipe_problems`` checks a file against this
table before anything starts.

``names="dataset"`` / ``"algorithm"`` / ``"hparams_space"``: the value must be a registered
name (a per-dataset map's keys too, besides ``"default"``).
"""

import dataclasses
from typing import Any, Dict

from domainbed.validation import Rule

DATASET = Rule("str", names="dataset")
ALGORITHM = Rule("str", names="algorithm")
_STEPS = Rule("int", minimum=1, nullable=True)
_COUNT = Rule("int", minimum=1)


def per_dataset(rule: Rule) -> Rule:
    """``rule``, or null, or ``{"default": value, "<Dataset>": value, ...}`` of it."""
    one = dataclasses.replace(rule, nullable=True)
    return dataclasses.replace(one, alternatives=rule.alternatives + (
        Rule("map", keys=("default",), names="dataset", items=one),))


def dataset_value(value: Any, dataset: str) -> Any:
    """The value for ``dataset`` of a key that may be given per dataset (``{"default": v,
    "VLCS": w}``, built with ``per_dataset(rule)``), else the value itself."""
    if isinstance(value, dict):
        return value.get(dataset, value.get("default"))
    return value


# free-form maps checked elsewhere: hyperparameters (hparams_checks), training flags
# (TrainConfig fields)
HPARAMS = Rule("map", nullable=True)
TRAIN_EXTRA = Rule("map", nullable=True)
TEST_ENV = Rule("int", minimum=0)

PRETRAIN: Dict[str, Rule] = {
    "dataset": Rule("str", names="dataset", required=True,
                    fix="the dataset the foundation featurizer is pretrained on"),
    "algorithm": ALGORITHM,
    "steps": _STEPS,
    "hparams": HPARAMS,
}

AUX: Dict[str, Rule] = {
    "datasets": Rule("list", items=DATASET, nullable=True, non_empty=True),
    "algorithm": ALGORITHM,
    "n_hparams": _COUNT,
    "n_trials": _COUNT,
    "pool_kind": Rule("str", choices=("standard", "robust")),
}

LINEAR_PROBE: Dict[str, Rule] = {
    "steps": _STEPS,
    "checkpoint_freq": Rule("int", minimum=1, nullable=True),
}

TARGET: Dict[str, Rule] = {
    "algorithms": Rule("list", items=ALGORITHM, nullable=True, non_empty=True),
    "n_hparams": _COUNT,
    "n_trials": _COUNT,
    "test_envs": per_dataset(Rule("int", minimum=0, alternatives=(
        Rule("list", items=TEST_ENV, non_empty=True),))),
    "fusing_range": Rule("number", minimum=0, nullable=True),
}

REPORT: Dict[str, Rule] = {
    "provider": Rule("str", names="report provider"),
    "module": Rule("str", fix="the module of a registered report provider"),
    "args": Rule("list", items=Rule("str")),
}

RECIPE_SCHEMA: Dict[str, Rule] = {
    "name": Rule("str"),
    "comment": Rule("any"),
    "data_dir": Rule("str"),
    "output_root": Rule("str"),
    "datasets": Rule("list", items=DATASET, non_empty=True, required=True,
                     fix='the target datasets, e.g. ["VLCS", "PACS"]'),
    "hparams": HPARAMS,
    "hparams_space": Rule("str", names="hparams_space", nullable=True),
    "steps": per_dataset(Rule("int", minimum=1)),
    "checkpoint_freq": per_dataset(Rule("int", minimum=1)),
    "pretrained_featurizer": Rule("str", nullable=True),
    "train_extra": TRAIN_EXTRA,
    "pretrain": Rule("object", children=PRETRAIN, nullable=True),
    "aux": Rule("object", children=AUX, nullable=True),
    "linear_probe": Rule("object", children=LINEAR_PROBE, nullable=True),
    "target": Rule("object", children=TARGET, nullable=True),
    "report": Rule("object", children=REPORT, nullable=True),
}
