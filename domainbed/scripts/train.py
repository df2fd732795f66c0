"""Train one model: ``python -m domainbed.scripts.train --dataset D --algorithm A ...``.

Writes results.jsonl, out.txt, err.txt, the final model and ``done`` into --output_dir.
Re-running the same command on an unfinished run directory resumes from its checkpoint.
"""

import argparse
import os
import sys
from typing import Tuple

from domainbed.errors import DomainBedError
from domainbed.lib.options import add_dataclass_arguments
from domainbed.scripts.cli import INTERRUPTED, exit_on_interrupt, print_errors
from domainbed.training.config import TrainConfig
from domainbed.training.job import interrupt_reported, resume_step, run_job  # noqa: F401
from domainbed.validation import error_lines


def build_parser() -> argparse.ArgumentParser:
    """The run's arguments: one flag per ``TrainConfig`` field, generated from the fields."""
    p = argparse.ArgumentParser(
        description="Train one DomainBed model into a resumable run directory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_arguments(p, TrainConfig)
    return p


def build_command_parser() -> argparse.ArgumentParser:
    """``build_parser`` (the run's arguments, one per TrainConfig field) and the command's
    own action flags, which are not arguments of the run."""
    p = build_parser()
    p.add_argument("--restart", action="store_true",
                   help="move an existing run directory aside (to .<name>.old-N beside it) "
                        "and start again, e.g. after changing the arguments of a run")
    return p


def parse_config(argv=None) -> TrainConfig:
    """The TrainConfig of a command line (``argv`` defaults to ``sys.argv[1:]``)."""
    return _parse(argv)[0]


def _parse(argv=None) -> Tuple[TrainConfig, bool]:
    """(config, --restart) of a command line."""
    namespace = build_command_parser().parse_args(argv)
    restart = bool(namespace.__dict__.pop("restart", False))
    return TrainConfig.from_namespace(namespace), restart


def main(argv=None) -> int:
    """Train; returns the exit status (2: bad input, nothing written; 1: the run failed).
    Ctrl-C logs one line and raises KeyboardInterrupt again (the script exits 130)."""
    try:
        config, restart = _parse(argv)
    except DomainBedError as exc:
        print_errors(None, error_lines(exc))
        return 2
    return run_job(config, restart=restart)


def _script() -> int:
    code = exit_on_interrupt(main, message=None)
    if code == INTERRUPTED and not interrupt_reported:
        print("train: interrupted (Ctrl-C)", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(_script())
