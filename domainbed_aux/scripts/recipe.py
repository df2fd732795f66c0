"""Run a ratatouille recipe: ``python -m domainbed_aux.scripts.recipe run RECIPE.json``.

    run RECIPE [--launcher local|slurm|dummy] [--dry_run] [--only STAGE ...]
    run_stage RECIPE --stage NAME       (one stage here)

Locally the stages run in order and finished work is reused; ``--launcher slurm`` submits
every stage with ``afterok`` dependencies and returns; ``--dry_run`` (or ``--launcher
dummy``) prints the job count of each stage and runs nothing.
"""

import argparse
import logging
import sys
from typing import Optional, Sequence

from domainbed.errors import DomainBedError
from domainbed.scripts.cli import (add_launcher_arguments, exit_on_interrupt, os_error_line,
                                   typed_launcher_options)
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
    for name in REGISTRY.names():  # each backend's own options
        add_launcher_arguments(p, REGISTRY.get(name))
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from domainbed.command_launchers import get_launcher
    from domainbed.sweep import plan as plans
    from domainbed.sweep.options import make_spec
    try:
        launcher = get_launcher("dummy" if args.dry_run else args.launcher)
        # the same plan as ``sweep launch --recipe FILE``, run by the same runner
        spec = make_spec(args.output_root, recipe=args.recipe, data_dir=args.data_dir,
                         allow_report_module=args.allow_report_module,
                         mode="list" if launcher.dry_run else "launch")
        plan = plans.read_plan(spec)
        args.output_dir = plan.root
        spec = spec.replace(output_dir=plan.root)
        options = plans.launcher_options(
            plan, launcher.name, *typed_launcher_options(launcher, parser, args,
                                                         [args.command, args.recipe]))
        if args.command == "run_stage":
            if not args.stage:
                raise DomainBedError("run_stage needs --stage, one of: "
                                     + ", ".join(recipe_lib.STAGES))
            plans.execute_stage(plan, args.stage, launcher, options)
            return 0
        for line in plans.execute(plan, spec, launcher, options, only=args.only):
            print(line)
    except DomainBedError as exc:
        for line in error_lines(exc):
            print(f"recipe {args.command}: error: {line}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"recipe {args.command}: error: {os_error_line(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(exit_on_interrupt(main, "recipe: interrupted (Ctrl-C)"))
