"""``sweep launch --recipe FILE``: the recipe file read into the core's multi-stage plan.

The recipe (see ``sweeps/``) chains pretraining, linear probes, the auxiliary sweeps, the
pools, the target sweeps and the report; the core runs the plan: ``--command_launcher``
local (stages in order), dummy (job counts per stage, nothing written) or slurm (stages
chained with afterok); ``--output_dir`` and ``--data_dir`` override the recipe's
``output_root`` and ``data_dir``; ``--only`` / ``--stage`` select stages.
"""

import os
from dataclasses import dataclass
from typing import List, Optional

from domainbed.lib.options import option
from domainbed.sweep import hooks


@hooks.register_sweep_options("recipe")
@dataclass
class RecipeOptions:
    """``sweep``'s options of a multi-stage recipe (in the main section of ``--help``)."""

    recipe: Optional[str] = option(
        None, metavar="FILE",
        help="run a multi-stage recipe (e.g. sweeps/embedded.json) instead of a single sweep; "
             "only with launch")
    allow_report_module: Optional[List[str]] = option(
        None, action="append", metavar="MODULE",
        help="let the recipe's report stage run MODULE (python -m MODULE ARGS) although it is "
             "not a registered report provider; a recipe file alone runs no code it names")


def _make_data_dir_for_generated_data(recipe: dict) -> None:
    """Generated datasets (the embedded benchmark) write their cache into the data dir."""
    from domainbed import datasets
    from domainbed.datasets.embedded import EmbeddedDataset
    names = set(recipe["datasets"]) | set((recipe.get("aux") or {}).get("datasets") or [])
    names |= {(recipe.get("pretrain") or {}).get("dataset")} - {None}
    try:
        generated = all(issubclass(datasets.get_dataset_class(n), EmbeddedDataset)
                        for n in names)
    except KeyError:
        return  # the recipe names an unknown dataset: let the sweep say so
    if generated:
        os.makedirs(recipe["data_dir"], exist_ok=True)


@hooks.register_plan_reader("recipe")
def read_recipe(spec) -> Optional["object"]:
    """The plan of ``--recipe FILE`` (None without the option)."""
    path = getattr(spec, "recipe", None)
    if not path:
        return None
    from domainbed_aux.recipe import load_recipe, recipe_plan
    allowed = tuple(getattr(spec, "allow_report_module", None) or ())
    recipe = load_recipe(path, spec.data_dir, spec.output_dir, allowed)
    if spec.mode == "launch":
        _make_data_dir_for_generated_data(recipe)
    return recipe_plan(recipe, allowed)
