"""Launch, clean up or inspect a sweep of training runs.

    python -m domainbed.scripts.sweep {launch,delete_incomplete,status} --output_dir OUT ...

Upstream DomainBed's module API is here too: ``Job`` (states ``NOT_LAUNCHED``,
``INCOMPLETE``, ``DONE``; ``command_str``; ``Job.launch``, ``Job.delete``), ``make_args_list``,
``all_test_env_combinations``, ``ask_for_confirmation`` and ``DATASETS`` (see
``domainbed.sweep.upstream`` for where ours departs from upstream's).
"""

import functools
import logging
import sys
from typing import List, Optional, Sequence

from domainbed.errors import DomainBedError
from domainbed.sweep import actions, hooks
from domainbed.sweep.jobs import all_test_env_combinations
from domainbed.sweep.options import build_parser, check_data_dir, jobs_from_args
from domainbed.sweep.upstream import Job, ask_for_confirmation, make_args_list


def main(argv: Optional[Sequence[str]] = None,
         train_command: Optional[Sequence[str]] = None) -> int:
    """Run the sweep command; returns the exit status (user errors print one line)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        for name in hooks.SWEEP_RUNNERS.names():
            code = hooks.SWEEP_RUNNERS.get(name)(args)
            if code is not None:
                return code
        # status and delete_incomplete need the job ids only: extensions plan nothing
        args.job_ids_only = args.command in ("status", "delete_incomplete")
        jobs = jobs_from_args(args, train_command)
        if args.command == "status":
            print(actions.status(jobs))
        elif args.command == "delete_incomplete":
            actions.delete_incomplete(jobs, skip_confirmation=args.skip_confirmation)
        else:
            _launch(args, jobs)
    except DomainBedError as exc:
        print(f"sweep {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _launch(args, jobs: List) -> None:
    from domainbed.command_launchers import get_launcher
    if not args.command_launcher:
        from domainbed.command_launchers import REGISTRY
        raise DomainBedError("launch needs --command_launcher, one of: "
                             + ", ".join(REGISTRY.names()))
    launcher = get_launcher(args.command_launcher)
    check_data_dir(args.data_dir)
    before = [functools.partial(hooks.BEFORE_LAUNCH.get(n), sweep_args=args)
              for n in hooks.BEFORE_LAUNCH.names()]
    actions.launch(jobs, launcher, skip_confirmation=args.skip_confirmation,
                   before_launch=before, **launcher.options_from_args(args))


def __getattr__(name):
    if name == "DATASETS":  # upstream's default --datasets: every dataset but the Debug ones
        from domainbed import datasets
        return [d for d in datasets.DATASETS if "Debug" not in d]
    raise AttributeError(f"module 'domainbed.scripts.sweep' has no attribute {name!r}")


__all__ = ["DATASETS", "Job", "all_test_env_combinations", "ask_for_confirmation", "main",
           "make_args_list"]


if __name__ == "__main__":
    sys.exit(main())
