"""One training run as a typed call: ``run_job(config) -> exit status``.

This is what a launcher calls to train a run in its own process (the in-process launcher,
the workers of the parallel one) and what ``python -m domainbed.scripts.train`` calls after
parsing its command line: the config is checked, the run's logging goes to its folder
(out.txt, err.txt), the run trains, and every failure becomes an exit status and one line,
as a subprocess would report it:

- 0: done;
- 2: bad input (nothing written) or a ``DomainBedError`` during the run;
- 1: the run failed (an ``OSError`` with the path and the way out, or a traceback in
  err.txt).

Ctrl-C logs one line naming the step the run resumes from and raises KeyboardInterrupt
again (the launcher stops). Torch-free until the run starts, so that a sweep can hold a
job's call (``training_call``) without importing torch.
"""

import functools
import logging
import os
import sys
import traceback
from typing import Callable

from domainbed.errors import DomainBedError, os_error_line, print_errors
from domainbed.lib import run_dir
from domainbed.training.config import TrainConfig

log = logging.getLogger("domainbed.train")

# set once a Ctrl-C was reported, so that the script adds no second line
interrupt_reported: list = []


def training_call(config: TrainConfig) -> Callable[[], int]:
    """The run of ``config`` as a picklable call without arguments (a launcher may send it
    to a worker process)."""
    return functools.partial(run_job, config)


def resume_step(output_dir: str) -> int:
    """The step a run in ``output_dir`` resumes from: its checkpoint's, else 0."""
    from domainbed.lib.weights import read_metadata
    path = os.path.join(output_dir, run_dir.CHECKPOINT)
    try:
        return int(read_metadata(path).get("step", 0)) if os.path.isfile(path) else 0
    except Exception:  # an unreadable checkpoint: the run starts again from step 0
        return 0


def setup_logging(output_dir: str) -> None:
    """The ``domainbed`` logger writes to stdout, ``out.txt`` and (warnings) ``err.txt``."""
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


def run_job(config: TrainConfig, restart: bool = False) -> int:
    """Check ``config``, train it (``restart``: move an existing run directory aside first)
    and return the exit status (see the module docstring)."""
    from domainbed.training.validate import validate_config
    from domainbed.validation import ValidationError, error_lines
    try:
        validate_config(config)
        setup_logging(config.output_dir)
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
        interrupt_reported.append(True)
        print("train: interrupted (Ctrl-C) before the run started", file=sys.stderr)
        raise
    from domainbed.training.run import train
    try:
        train(config, restart=restart)
    except DomainBedError as exc:
        for line in error_lines(exc):
            log.error("error: %s", line)
        return 2
    except KeyboardInterrupt:
        interrupt_reported.append(True)
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
