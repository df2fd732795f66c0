"""Launch, clean up or inspect a sweep of training runs.

    python -m domainbed.scripts.sweep {launch,delete_incomplete,status} --output_dir OUT ...

Upstream DomainBed's module API is here too: ``Job`` (states ``NOT_LAUNCHED``,
``INCOMPLETE``, ``DONE``; ``command_str``; ``Job.launch``, ``Job.delete``), ``make_args_list``,
``all_test_env_combinations``, ``ask_for_confirmation`` and ``DATASETS`` (see
``domainbed.sweep.upstream`` for where ours departs from upstream's).
"""

import logging
import sys
from typing import Optional, Sequence

from domainbed.errors import DomainBedError
from domainbed.scripts.cli import (exit_on_interrupt, os_error_line, print_errors,
                                   typed_launcher_options)
from domainbed.scripts.sweep_args import build_parser, from_namespace, remembered
from domainbed.sweep import actions, plan
from domainbed.sweep.jobs import all_test_env_combinations
from domainbed.sweep.options import list_jobs
from domainbed.sweep.upstream import Job, ask_for_confirmation, make_args_list
from domainbed.sweep.validate import launcher_problems, sweep_problems
from domainbed.validation import error_lines, raise_if_any


def main(argv: Optional[Sequence[str]] = None,
         train_command: Optional[Sequence[str]] = None) -> int:
    """Run the sweep command; returns the exit status (user errors print one line)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command in ("status", "delete_incomplete"):
            # the options left out come from the sweep folder's sweep.json, if any
            for line in remembered(parser, args, argv)[1]:
                print(f"sweep {args.command}: note: {line}", file=sys.stderr)
        # status and delete_incomplete need the job ids only: extensions plan nothing
        mode = "ids" if args.command in ("status", "delete_incomplete") else "launch"
        spec = from_namespace(args, mode=mode)
        multi_stage = plan.read_plan(spec)  # a recipe is validated as it is read
        if multi_stage is not None:
            raise_if_any(launcher_problems(vars(args)))
            return _run_plan(parser, args, spec, multi_stage)
        raise_if_any(sweep_problems(spec, vars(args)))
        if args.stage or args.only:
            raise DomainBedError("--stage and --only select stages of a multi-stage plan "
                                 "(e.g. --recipe FILE)")
        if args.command == "status":
            print(actions.status(list_jobs(spec, train_command)))
        elif args.command == "delete_incomplete":
            actions.delete_incomplete(list_jobs(spec, train_command),
                                      skip_confirmation=args.skip_confirmation)
        else:
            launcher = _launcher(args)
            options = launcher.options_from_args(args)
            launched = plan.launch_sweep(spec, launcher, options,
                                         skip_confirmation=args.skip_confirmation,
                                         train_command=train_command)
            if launched and launcher.waits(options):
                lines, all_done = actions.summary(launched)
                print("\n".join(lines))
                return 0 if all_done else 1
    except DomainBedError as exc:
        print_errors(f"sweep {args.command}", error_lines(exc))
        return 2
    except OSError as exc:
        print_errors(f"sweep {args.command}", [os_error_line(exc)])
        return 1
    return 0


def _launcher(args):
    from domainbed.command_launchers import REGISTRY, get_launcher
    if not args.command_launcher:
        raise DomainBedError("launch needs --command_launcher, one of: "
                             + ", ".join(REGISTRY.names()))
    return get_launcher(args.command_launcher)


def _run_plan(parser, args, spec, multi_stage: "plan.Plan") -> int:
    """Run, list or submit a multi-stage plan (``--recipe FILE``) with the one plan runner;
    ``--stage NAME`` runs one stage here."""
    if args.command != "launch":
        raise DomainBedError(f"a multi-stage plan runs with launch only (got {args.command}); "
                             "for the state of a stage, run status on its sweep folder")
    launcher = _launcher(args)
    if not args.output_dir:  # the plan's own root (a recipe's output_root), for stage jobs
        args.output_dir = multi_stage.root
        spec = spec.replace(output_dir=multi_stage.root)
    options = plan.launcher_options(multi_stage, launcher.name,
                                    *typed_launcher_options(launcher, parser, args,
                                                            [args.command]))
    if args.stage and not launcher.dry_run:  # one stage, here
        plan.execute_stage(multi_stage, args.stage, launcher, options)
        return 0
    for line in plan.execute(multi_stage, spec, launcher, options, only=args.only):
        print(line)
    return 0


def __getattr__(name):
    if name == "DATASETS":  # upstream's default --datasets: every dataset but the Debug ones
        from domainbed import datasets
        return [d for d in datasets.DATASETS if "Debug" not in d]
    raise AttributeError(f"module 'domainbed.scripts.sweep' has no attribute {name!r}")


__all__ = ["DATASETS", "Job", "all_test_env_combinations", "ask_for_confirmation", "main",
           "make_args_list"]


if __name__ == "__main__":
    sys.exit(exit_on_interrupt(main, "sweep: interrupted (Ctrl-C)"))
