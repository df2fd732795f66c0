"""The recipe file: a declarative description of the paper's stages.

Recipe file (JSON; see ``sweeps/ratatouille_paper.json`` and docs/ratatouille.md)::

    {"name": "paper", "data_dir": "data", "output_root": "ratatouille_out",
     "datasets": ["VLCS", ...],                   # target datasets
     "hparams": {...} | null,                      # overrides for every job
     "hparams_space": "mild",
     "steps": {"default": 5001, "DomainNet": 15001},
     "checkpoint_freq": {"default": null, "VLCS": 50},
     "pretrained_featurizer": null | FILE,
     "pretrain": null | {"dataset": D, "algorithm": "ERM", "steps": N, "hparams": {...}},
     "aux": {"datasets": null (= the targets), "algorithm": "ERM", "n_hparams": 4,
             "n_trials": 1, "pool_kind": "standard"},
     "linear_probe": {"steps": null, "checkpoint_freq": null},  # the probe's own budget
     "target": {"algorithms": ["Ratatouille"], "n_hparams": 20, "n_trials": 3,
                "test_envs": null (= each one), "fusing_range": null},
     "report": {"module": "domainbed_aux.scripts.report", "args": [...]} | null,
     "train_extra": {"full_evaluation": true} | null}  # training flags of every job

Layout under ``output_root``: ``pretrain/``, ``aux/<Dataset>_notest/<run>/``, ``lp/``
(linear probes and init files), ``target/<Dataset>/test<k>/`` (one sweep per dataset and
test env, as the paper's code; its pool in ``aux_pool/``), ``report.txt``. With a pretrain
stage, phi_pt is the featurizer of its single run (``pretrain/<job>/model.safetensors``).
"""

import json
import os
from typing import Any, Dict, Optional, Sequence

from domainbed.errors import DomainBedError
from domainbed.validation import ValidationError

from domainbed_aux.recipe.schema import RECIPE_SCHEMA

KEYS = tuple(RECIPE_SCHEMA)  # the schema declares every key (schema.py)


class RecipeError(DomainBedError):
    """A recipe file that cannot be run as written."""


class RecipeValidationError(ValidationError, RecipeError):
    """A recipe file with problems: one line each (``problems``)."""


def load_recipe(path: str, data_dir: Optional[str] = None,
                output_root: Optional[str] = None,
                allowed_report_modules: Sequence[str] = ()) -> Dict[str, Any]:
    """Read a recipe file and check it (``validate.recipe_problems``: every problem at
    once, as a RecipeValidationError); ``data_dir`` / ``output_root`` override the file's
    values; ``allowed_report_modules`` are report modules the command line allows."""
    from domainbed_aux.recipe.validate import recipe_problems
    try:
        with open(path, encoding="utf-8") as f:
            recipe = json.load(f)
    except (OSError, ValueError) as exc:
        raise RecipeError(f"cannot read recipe {path!r}: {exc}") from None
    if data_dir is not None and isinstance(recipe, dict):
        recipe["data_dir"] = data_dir
    if output_root is not None and isinstance(recipe, dict):
        recipe["output_root"] = output_root
    problems = recipe_problems(recipe, allowed_report_modules)
    if problems:
        raise RecipeValidationError(problems)
    recipe.setdefault("output_root", "ratatouille_out")
    recipe.setdefault("data_dir", "data")
    return recipe


def root(recipe: Dict[str, Any], *parts: str) -> str:
    """A path under the recipe's output root (absolute)."""
    return os.path.join(os.path.abspath(recipe["output_root"]), *parts)
