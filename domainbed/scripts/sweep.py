"""Launch, clean up or inspect a sweep of training runs.

    python -m domainbed.scripts.sweep {launch,delete_incomplete,status} --output_dir OUT ...

Upstream DomainBed's module API is here too: ``Job`` (states ``NOT_LAUNCHED``,
``INCOMPLETE``, ``DONE``; ``command_str``; ``Job.launch``, ``Job.delete``), ``make_args_list``,
``all_test_env_combinations``, ``ask_for_confirmation`` and ``DATASETS`` (see
``domainbed.sweep.upstream`` for where ours departs from upstream's).
"""

import functools
import logging
import os
import sys
import time
from typing import List, Optional, Sequence

from domainbed.errors import DomainBedError
from domainbed.scripts.cli import exit_on_interrupt, os_error_line, print_errors
from domainbed.sweep import actions, memory, plan
from domainbed.sweep.jobs import all_test_env_combinations
from domainbed.sweep.options import build_parser, from_namespace, list_jobs
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
            for line in memory.remembered(parser, args, argv)[1]:
                print(f"sweep {args.command}: note: {line}", file=sys.stderr)
        # status and delete_incomplete need the job ids only: extensions plan nothing
        mode = "ids" if args.command in ("status", "delete_incomplete") else "launch"
        spec = from_namespace(args, mode=mode)
        multi_stage = plan.read_plan(spec)  # a recipe is validated as it is read
        if multi_stage is not None:
            raise_if_any(launcher_problems(args))
            return _run_plan(parser, args, multi_stage)
        raise_if_any(sweep_problems(spec, args))
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
            if launched and _waits_for_jobs(launcher, options):
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


def _waits_for_jobs(launcher, options) -> bool:
    """Whether the launcher returns once its jobs ended (not: listing, a SLURM submission
    that does not wait)."""
    if getattr(launcher, "dry_run", False):
        return False
    return launcher.name != "slurm" or bool(options.get("wait"))


def _launcher(args):
    from domainbed.command_launchers import REGISTRY, get_launcher
    if not args.command_launcher:
        raise DomainBedError("launch needs --command_launcher, one of: "
                             + ", ".join(REGISTRY.names()))
    return get_launcher(args.command_launcher)


def _run_plan(parser, args, multi_stage: "plan.Plan") -> int:
    """Run, list or submit a multi-stage plan (``--recipe FILE``)."""
    if args.command != "launch":
        raise DomainBedError(f"a multi-stage plan runs with launch only (got {args.command}); "
                             "for the state of a stage, run status on its sweep folder")
    launcher = _launcher(args)
    if getattr(launcher, "dry_run", False):
        for line in plan.describe(multi_stage):
            print(line)
        return 0
    if not args.output_dir:  # the plan's own root (a recipe's output_root), for stage jobs
        args.output_dir = multi_stage.root
    options = launcher.options_from_args(args)
    defaults = launcher.options_from_args(parser.parse_args([args.command]))
    typed = [k for k in options if options[k] != defaults.get(k)]
    options = plan.launcher_options(multi_stage, launcher.name, options, typed=typed)
    start = time.time()
    if args.command_launcher == "slurm" and not args.stage:
        ids = plan.submit(multi_stage, launcher, options,
                          functools.partial(_stage_command, parser, args))
        for name, job_ids in ids.items():
            print(f"stage {name}: SLURM jobs {','.join(job_ids)}")
        return 0
    if args.stage:  # one stage (what a SLURM stage job runs)
        plan.run_stage(multi_stage.stage(args.stage), launcher, options)
        return 0
    plan.run_locally(multi_stage, launcher, options, only=args.only)
    root = multi_stage.root
    print(f"\n{multi_stage.name} finished in {time.time() - start:.0f} s; files are under "
          f"{root}")
    for output in multi_stage.outputs:
        if _written_since(output, start):  # announce only what this command wrote
            print(f"  {output}")
    return 0


def _written_since(output: str, start: float) -> bool:
    """Whether the file an output line names (``"what: PATH"``) was written since
    ``start``."""
    path = output.split(": ", 1)[-1]
    try:
        return os.path.getmtime(path) >= start - 1
    except OSError:
        return False


def _stage_command(parser, args, stage: str) -> List[str]:
    """The command of a SLURM job that runs one stage of the plan: this command line with
    absolute paths, ``--stage NAME`` and ``--slurm_wait``."""
    command = [sys.executable, "-m", "domainbed.scripts.sweep", "launch"]
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "stage", "slurm_wait",
                                                        "skip_confirmation"):
            continue
        value = getattr(args, action.dest, None)
        if value is None or value is False or value == action.default:
            continue
        if action.nargs == 0 and value != action.const:
            continue  # e.g. --no_in_process when the value is --in_process's
        if action.dest in ("output_dir", "data_dir") or (
                isinstance(value, str) and os.path.exists(value)):
            value = os.path.abspath(value)
        flag = action.option_strings[-1] if action.dest != "dataset" else "--dataset"
        if value is True:
            command.append(flag)
        elif isinstance(value, list):
            command += [flag, *map(str, value)]
        else:
            command += [flag, str(value)]
    return command + ["--skip_confirmation", "--slurm_wait", "--stage", stage]


def __getattr__(name):
    if name == "DATASETS":  # upstream's default --datasets: every dataset but the Debug ones
        from domainbed import datasets
        return [d for d in datasets.DATASETS if "Debug" not in d]
    raise AttributeError(f"module 'domainbed.scripts.sweep' has no attribute {name!r}")


__all__ = ["DATASETS", "Job", "all_test_env_combinations", "ask_for_confirmation", "main",
           "make_args_list"]


if __name__ == "__main__":
    sys.exit(exit_on_interrupt(main, "sweep: interrupted (Ctrl-C)"))
