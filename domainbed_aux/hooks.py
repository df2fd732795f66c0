"""The extension's torch-free entry point (``domainbed.sweep_plugins``, see setup.py): every
registration the core needs to list this package's names and plan its sweeps without
importing torch. Glue only: the planning is ``domainbed_aux.planning`` (which job starts
from what) and ``domainbed_aux.recipe`` (the recipe's stages).

- the registries' indexes search this package: its algorithms are indexed from source with
  their metadata (init kind, report family), as the core's are;
- ``sweep``'s options of the ratatouille family (the paper code's words): ``--aux_dir AUX``
  (auxiliary sweeps, one sub-folder per dataset as ``AUX/<Dataset>_notest/<run>/``, or a pool
  folder / ``pool.json``; ``none`` or empty = no pool), ``--output_dir_lp LP`` (where shared
  linear probes and composed init files live; default ``<output_dir>/linear_probe`` when a
  pool is used), ``--fusing_range r`` (>= 0 switches to fusing), ``--pretrained_featurizer
  FILE`` (explicit phi_pt), ``--aux_pool_kind standard|robust`` (robust: pool of
  moving-average "MA" aux runs), ``--lp_steps_total N`` and ``--lp_checkpoint_freq N``
  (steps and evaluation frequency of the linear probe) and ``--hparams_space``
  (upstream|mild). Without ``--algorithms``: ``Fusing`` with ``--fusing_range`` >= 0, else
  ``Ratatouille`` with ``--aux_dir``, else ``ERM`` with ``--output_dir_lp``;
- the job transformer (each job's ``--init_from``, from the sweep's ``InitPlanner``) and the
  before-launch hook (probes, pools and init files written);
- ``--recipe FILE`` (and ``--allow_report_module``): the recipe read into the core's
  multi-stage plan, which the core runs (``--command_launcher`` local: stages in order;
  dummy: job counts per stage, nothing written; slurm: stages chained with afterok);
  ``--output_dir`` and ``--data_dir`` override the recipe's ``output_root`` and ``data_dir``;
  ``--only`` / ``--stage`` select stages.
"""

import argparse
import os
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List, Optional

from domainbed.algorithms.registry import ALGORITHM_REGISTRY
from domainbed.datasets.registry import DATASET_REGISTRY
from domainbed.lib.options import option
from domainbed.sweep import hooks
from domainbed.sweep.validate import register_sweep_rule
from domainbed.validation import Rule
from domainbed_aux import planning

# a registration anywhere in this package is indexed (read from source, not imported)
ALGORITHM_REGISTRY.search("domainbed_aux")
DATASET_REGISTRY.search("domainbed_aux")


# ------------------------------------------------------------- the ratatouille options

class _DefaultAlgorithms(list):
    """The algorithm list this plugin chose (the user gave no --algorithms)."""


class _StoreAndDefault(argparse.Action):
    """Stores the value, then sets --algorithms to the recipe's default unless given."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        current = getattr(namespace, "algorithms", None)
        if current is None or isinstance(current, _DefaultAlgorithms):
            default = planning.default_algorithms(namespace)
            if default is not None:
                namespace.algorithms = _DefaultAlgorithms(default)


# the ranges of the options below, checked with the core's (domainbed.sweep.validate)
register_sweep_rule("lp_steps_total", Rule("int", minimum=1, nullable=True, hide_null=True))
register_sweep_rule("fusing_range", Rule("number", fix="r >= 0 switches to fusing; -1: off"))


@hooks.register_sweep_options("ratatouille")
@dataclass
class RatatouilleOptions:
    """The sweep options of the ratatouille family (see the module docstring)."""

    GROUP: ClassVar[str] = "model ratatouille (domainbed_aux)"

    aux_dir: Optional[str] = option(
        None, action=_StoreAndDefault,
        help="auxiliary sweeps (AUX/<Dataset>_notest/<run>/) or a pool folder/pool.json; "
             "'none' = no pool")
    output_dir_lp: Optional[str] = option(
        None, action=_StoreAndDefault,
        help="where the shared linear probes are trained (once) and reused")
    fusing_range: float = option(-1.0, action=_StoreAndDefault,
                                 help="r >= 0 switches to fusing: lambda = softmax(r u)")
    pretrained_featurizer: Optional[str] = option(
        None, metavar="FILE",
        help="explicit pretrained featurizer phi_pt (default: the core's network for the "
             "dataset)")
    aux_pool_kind: str = option(
        "standard", choices=planning.POOL_KINDS,
        help="robust: build the pool from moving-average (MA) auxiliary runs")
    lp_steps_total: Optional[int] = option(
        None, help="training steps of the linear probe (default: --steps, else the dataset's "
                   "N_STEPS)")
    lp_checkpoint_freq: Optional[int] = option(
        None, help="evaluation frequency of the linear probe (default: --checkpoint_freq, else "
                   "the dataset's CHECKPOINT_FREQ)")
    # shared: when the core or another extension declares --hparams_space, that flag is read
    hparams_space: Optional[str] = option(
        None, shared=True,
        help="hparams distributions of every job: upstream or mild (the paper's Table 3); "
             "default: the training default")


# ------------------------------------------------------------- the sweep's hooks

@hooks.register_job_transformer("ratatouille")
def transform_job(train_args: Dict[str, Any], sweep_args) -> Dict[str, Any]:
    """Add ``init_from`` (and ``hparams_space``) to the jobs that need them."""
    return planning.planner_of(sweep_args).plan_job(train_args)


@hooks.register_before_launch("ratatouille")
def prepare_inits(jobs, sweep_args) -> List[str]:
    """Build or verify pools, train missing linear probes, write phi_pt and the init files
    the jobs use (the core does not call it for launchers that only list, e.g. dummy)."""
    return planning.planner_of(sweep_args).prepare(jobs)


# ------------------------------------------------------------- the recipe

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
