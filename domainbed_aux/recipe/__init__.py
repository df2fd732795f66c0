"""The ratatouille recipe: a recipe file (``spec``) turned into the core's multi-stage plan
(``plan``), whose training stages are sweeps (``sweeps``) and whose other stages run here
(``steps``)."""

from domainbed_aux.recipe.plan import STAGES, local_launcher_options, recipe_plan
from domainbed_aux.recipe.spec import RecipeError, load_recipe
from domainbed_aux.recipe.sweeps import (aux_sweeps, pretrain_sweep, pretrained_featurizer,
                                         target_sweeps)

__all__ = ["RecipeError", "STAGES", "local_launcher_options", "aux_sweeps", "load_recipe",
           "pretrain_sweep", "pretrained_featurizer", "recipe_plan", "target_sweeps"]
