"""Train one model: ``python -m domainbed.scripts.train --dataset D --algorithm A ...``.

Writes results.jsonl, out.txt, err.txt, the final model and ``done`` into --output_dir.
Re-running the same command on an unfinished run directory resumes from its checkpoint.
"""

import argparse
import logging
import os
import sys
import traceback

from typing import Tuple

from domainbed.errors import DomainBedError
from domainbed.lib import run_dir
from domainbed.lib.options import add_dataclass_arguments
from domainbed.scripts.cli import INTERRUPTED, exit_on_interrupt, os_error_line, print_errors
from domainbed.training.config import TrainConfig
from domainbed.training.validate import validate_config
from domainbed.validation import ValidationError, error_lines


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


def _setup_logging(output_dir: str) -> None:
    os.makedirs(output_dir, exist_ok=True)
    logger = logging.getLogger("domainbed")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    out = logging.FileHandler(os.path.join(output_dir, run_dir.OUT), encoding="utf-8")
    out.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    err = logging.FileHandler(os.path.join(output_dir, run_dir.ERR), encoding="utf-8")
    err.setLevel(logging.WARNING)
    err.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    for handler in (console, out, err):
        logger.addHandler(handler)


def parse_config(argv=None) -> TrainConfig:
    """The TrainConfig of a command line (``argv`` defaults to ``sys.argv[1:]``)."""
    return _parse(argv)[0]


def _parse(argv=None) -> Tuple[TrainConfig, bool]:
    """(config, --restart) of a command line."""
    namespace = build_command_parser().parse_args(argv)
    restart = bool(namespace.__dict__.pop("restart", False))
    return TrainConfig.from_namespace(namespace), restart


def resume_step(output_dir: str) -> int:
    """The step a run in ``output_dir`` resumes from: its checkpoint's, else 0."""
    from domainbed.lib.weights import read_metadata
    path = os.path.join(output_dir, run_dir.CHECKPOINT)
    try:
        return int(read_metadata(path).get("step", 0)) if os.path.isfile(path) else 0
    except Exception:  # an unreadable checkpoint: the run starts again from step 0
        return 0


def main(argv=None) -> int:
    """Train; returns the exit status (2: bad input, nothing written; 1: the run failed).
    Ctrl-C logs one line and raises KeyboardInterrupt again (the script exits 130)."""
    try:
        config, restart = _parse(argv)
        validate_config(config)
        _setup_logging(config.output_dir)
    except ValidationError as exc:
        print_errors(None, exc.problems)
        return 2
    except DomainBedError as exc:
        print_errors(None, error_lines(exc))
        return 2
    except OSError as exc:  # the output folder cannot be made or written
        print_errors(None, [os_error_line(exc)])
        return 1
    except KeyboardInterrupt:
        _interrupt_reported.append(True)
        print("train: interrupted (Ctrl-C) before the run started", file=sys.stderr)
        raise
    log = logging.getLogger("domainbed.train")
    from domainbed.training.run import train
    try:
        train(config, restart=restart)
    except DomainBedError as exc:
        for line in error_lines(exc):
            log.error("error: %s", line)
        return 2
    except KeyboardInterrupt:
        _interrupt_reported.append(True)
        log.error("interrupted (Ctrl-C): run the same command again to resume from step %d",
                  resume_step(config.output_dir))
        raise
    except OSError as exc:
        log.error("error: %s", os_error_line(exc, resume_step(config.output_dir)))
        return 1
    except Exception:
        log.error("training failed:\n%s", traceback.format_exc())
        return 1
    return 0


_interrupt_reported: list = []  # main said it already: the script adds no second line


def _script() -> int:
    code = exit_on_interrupt(main, message=None)
    if code == INTERRUPTED and not _interrupt_reported:
        print("train: interrupted (Ctrl-C)", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(_script())
