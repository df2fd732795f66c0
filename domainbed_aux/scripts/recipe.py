"""Run a ratatouille recipe: ``python -m domainbed_aux.scripts.recipe run RECIPE.json``.

    run RECIPE [--launcher local|slurm|dummy] [--dry_run] [--only STAGE ...]
    run_stage RECIPE --stage NAME       (one stage here; what SLURM stage jobs run)

Locally the stages run in order and finished work is reused; ``--launcher slurm`` submits
every stage with ``afterok`` dependencies and returns; ``--dry_run`` (or ``--launcher
dummy``) prints the job count of each stage and runs nothing.
"""

import argparse
import logging
import os
import sys
from typing import List, Optional, Sequence

from domainbed.errors import DomainBedError
from domainbed.scripts.cli import exit_on_interrupt, os_error_line
from domainbed.validation import error_lines
from domainbed_aux import recipe as recipe_lib


def build_parser() -> argparse.ArgumentParser:
    from domainbed.command_launchers import REGISTRY
    p = argparse.ArgumentParser(prog="python -m domainbed_aux.scripts.recipe",
                                description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["run", "run_stage"])
    p.add_argument("recipe", help="recipe JSON file (see sweeps/)")
    p.add_argument("--launcher", choices=REGISTRY.names(), default="local")
    p.add_argument("--dry_run", action="store_true", help="print job counts per stage only")
    p.add_argument("--data_dir", default=None, help="override the recipe's data_dir")
    p.add_argument("--output_root", default=None, help="override the recipe's output_root")
    p.add_argument("--only", nargs="+", choices=recipe_lib.STAGES, default=None,
                   help="run only these stages (local)")
    p.add_argument("--stage", choices=recipe_lib.STAGES, default=None,
                   help="the stage of run_stage")
    p.add_argument("--allow_report_module", action="append", default=None, metavar="MODULE",
                   help="let the report stage run MODULE although it is not a registered "
                        "report provider (a recipe file alone runs no code it names)")
    REGISTRY.get("slurm").add_arguments(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from domainbed.command_launchers import get_launcher
    from domainbed.sweep import plan as plans
    try:
        allowed = tuple(args.allow_report_module or ())
        recipe = recipe_lib.load_recipe(args.recipe, args.data_dir, args.output_root, allowed)
        plan = recipe_lib.recipe_plan(recipe, allowed)
        if args.dry_run or args.launcher == "dummy":
            for line in plans.describe(plan):
                print(line)
            return 0
        launcher = get_launcher(args.launcher)
        args.output_dir = recipe["output_root"]
        typed = launcher.options_from_args(args) if args.launcher == "slurm" else {}
        options = plans.launcher_options(plan, args.launcher, typed, typed=list(typed))
        if args.command == "run_stage":
            if not args.stage:
                raise DomainBedError("run_stage needs --stage, one of: "
                                     + ", ".join(recipe_lib.STAGES))
            if args.launcher == "slurm":  # inside a stage job: submit, then wait
                options["wait"] = True
            plans.run_stage(plan.stage(args.stage), launcher, options)
        elif args.launcher == "slurm":
            prefix = [sys.executable, "-m", "domainbed_aux.scripts.recipe", "run_stage",
                      os.path.abspath(args.recipe),
                      *_options_for_stage_jobs(recipe, argv, allowed),
                      "--stage"]
            ids = plans.submit(plan, launcher, options, lambda name: prefix + [name])
            for name, job_ids in ids.items():
                print(f"stage {name}: SLURM jobs {','.join(job_ids)}")
        else:
            plans.run_locally(plan, launcher, options, args.only)
    except DomainBedError as exc:
        for line in error_lines(exc):
            print(f"recipe {args.command}: error: {line}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"recipe {args.command}: error: {os_error_line(exc)}", file=sys.stderr)
        return 1
    return 0


def _slurm_flags(argv: Sequence[str]) -> List[str]:
    """The --slurm_* options (with their values) of ``argv``."""
    out, keep = [], False
    for a in argv:
        if a.startswith("--"):
            keep = a.startswith("--slurm_") and a != "--slurm_wait"
        if keep:
            out.append(a)
    return out


def _options_for_stage_jobs(recipe: dict, argv: Sequence[str],
                            allowed_modules: Sequence[str] = ()) -> List[str]:
    """--launcher slurm, absolute paths, the allowed report modules and the --slurm_*
    options for stage jobs."""
    allowed = [a for m in allowed_modules for a in ("--allow_report_module", m)]
    return ["--launcher", "slurm", "--data_dir", os.path.abspath(recipe["data_dir"]),
            "--output_root", os.path.abspath(recipe["output_root"])] + allowed + \
        _slurm_flags(argv)


if __name__ == "__main__":
    sys.exit(exit_on_interrupt(main, "recipe: interrupted (Ctrl-C)"))
