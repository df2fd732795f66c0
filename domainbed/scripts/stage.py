"""Run one stage of a submitted multi-stage plan: what a queued stage job runs.

    python -m domainbed.scripts.stage SOURCE STAGE

SOURCE is the file ``domainbed.sweep.plan.write_source`` wrote when the plan was submitted
(the sweep spec the plan is read from, the launcher and its options); the stage lists its
jobs now, submits those not done and waits for them. Not meant to be typed: ``sweep launch
--recipe FILE --command_launcher slurm`` and ``recipe run --launcher slurm`` submit it.
"""

import argparse
import logging
import sys
from typing import Optional, Sequence

from domainbed.errors import DomainBedError
from domainbed.scripts.cli import exit_on_interrupt, os_error_line, print_errors
from domainbed.validation import error_lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m domainbed.scripts.stage",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("source", help="the plan's source file (<root>/.plan/<id>.json)")
    parser.add_argument("stage", help="the stage to run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from domainbed.command_launchers import get_launcher
    from domainbed.plugins import SWEEP_PLUGINS, load_plugins
    from domainbed.sweep import plan as plans
    try:
        load_plugins(SWEEP_PLUGINS)  # the plan readers of extensions
        spec, launcher_name, options = plans.read_source(args.source)
        plan = plans.read_plan(spec)
        if plan is None:
            raise plans.PlanError(f"{args.source}: no installed extension reads a plan from "
                                  "this sweep's options")
        plans.execute_stage(plan, args.stage, get_launcher(launcher_name), options)
    except DomainBedError as exc:
        print_errors(f"stage {args.stage}", error_lines(exc))
        return 2
    except OSError as exc:
        print_errors(f"stage {args.stage}", [os_error_line(exc)])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(exit_on_interrupt(main, "stage: interrupted (Ctrl-C)"))
