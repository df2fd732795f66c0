"""``sweep launch --recipe FILE``: run a multi-stage recipe through the core's sweep command.

The recipe (see ``sweeps/``) chains pretraining, the auxiliary pool, linear probes, target
sweeps and the report; ``--command_launcher`` picks local, dummy (list the jobs per stage)
or slurm (stages chained with afterok); ``--output_dir`` and ``--data_dir`` override the
recipe's ``output_root`` and ``data_dir``.
"""

import argparse
import os
import time
from typing import List, Optional

from domainbed.sweep import hooks


@hooks.register_sweep_arguments("recipe")
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", default=None, metavar="FILE",
                        help="run a multi-stage recipe (e.g. sweeps/embedded.json) instead of "
                             "a single sweep; only with launch")


def _slurm_flags(args) -> List[str]:
    flags = []
    for key, value in sorted(vars(args).items()):
        if not key.startswith("slurm_") or value in (None, False):
            continue
        flags.append(f"--{key}")
        if value is not True:
            flags.extend(str(v) for v in (value if isinstance(value, list) else [value]))
    return flags


def recipe_argv(args) -> List[str]:
    """The ``domainbed_aux.scripts.recipe`` command line equivalent to this sweep call."""
    argv = ["run", args.recipe, "--launcher", args.command_launcher or "local",
            "--output_root", args.output_dir]
    if args.data_dir:
        argv += ["--data_dir", args.data_dir]
    if args.command_launcher == "slurm":
        argv += _slurm_flags(args)
    return argv


def _make_data_dir_for_generated_data(args) -> None:
    """Generated datasets (the embedded benchmark) write their cache into --data_dir."""
    from domainbed import datasets
    from domainbed.datasets.embedded import EmbeddedDataset
    from domainbed_aux.recipe import load_recipe
    recipe = load_recipe(args.recipe, args.data_dir, args.output_dir)
    names = set(recipe["datasets"]) | set((recipe.get("aux") or {}).get("datasets") or [])
    names |= {(recipe.get("pretrain") or {}).get("dataset")} - {None}
    try:
        generated = all(issubclass(datasets.get_dataset_class(n), EmbeddedDataset)
                        for n in names)
    except KeyError:
        return  # the recipe names an unknown dataset: let the sweep say so
    if generated:
        os.makedirs(recipe["data_dir"], exist_ok=True)


@hooks.register_sweep_runner("recipe")
def run_recipe(args) -> Optional[int]:
    if not getattr(args, "recipe", None):
        return None
    from domainbed.errors import DomainBedError
    if args.command != "launch":
        raise DomainBedError(f"--recipe works with launch only (got {args.command}); for the "
                             "state of a stage, run status on its sweep folder")
    from domainbed_aux.scripts import recipe as recipe_cli
    _make_data_dir_for_generated_data(args)
    start = time.time()
    code = recipe_cli.main(recipe_argv(args))
    if code == 0 and args.command_launcher not in ("dummy", "slurm"):
        root = os.path.abspath(args.output_dir)
        print(f"\nrecipe finished in {time.time() - start:.0f} s; files are under {root}")
        print(f"  report: {os.path.join(root, 'report.txt')}")
    return code
