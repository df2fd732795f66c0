"""One training run directory, resumable after a kill or a preemption: ``train(config)``.

The run's stages, one module each: ``setup`` (names, hparams, dataset, splits, algorithm,
arithmetic), ``resume`` (checkpoint or fresh start with ``--init_from``), ``feeds``
(loaders from the start step, scorer), ``loop`` (steps, evaluation records, checkpoints)
and ``final`` (final record, model, ``done``).
"""

import argparse
import json
import logging
import os
import traceback
from typing import Optional, Union

from domainbed.errors import DomainBedError, one_line
from domainbed.lib import misc, run_dir
from domainbed.training.best import BestCheckpoint  # noqa: F401 (re-exported)
from domainbed.training.config import TrainConfig
from domainbed.training.feeds import make_feeds
from domainbed.training.final import finish
from domainbed.training.identity import (check_checkpoint, check_done, identity_of,
                                         move_aside)
from domainbed.training.loop import run_steps
from domainbed.training.resume import resume_or_start
from domainbed.training.setup import prepare_run, resolve_hparams  # noqa: F401 (re-exported)
from domainbed.training.validate import validate_config
from domainbed.lib.atomic import remove_stale_temporaries

log = logging.getLogger("domainbed.train")


class RunLocked(DomainBedError):
    """Another process is training in the same run directory."""


def as_config(config: Union[TrainConfig, argparse.Namespace]) -> TrainConfig:
    """A TrainConfig as is; the namespace of an older caller converted."""
    if isinstance(config, TrainConfig):
        return config
    return TrainConfig.from_namespace(config)


def train(config: Union[TrainConfig, argparse.Namespace],
          restart: bool = False) -> Optional[str]:
    """Run (or resume, or skip when done) the training described by ``config``.

    Returns the run directory. Raises ValidationError (every problem of the arguments,
    nothing written) or another DomainBedError on bad input; RunIdentityError when the
    directory holds a run of other arguments (``restart`` moves it aside first); RunLocked
    when another process trains in the same directory. A failure leaves ``failed`` (error,
    traceback).
    """
    config = as_config(config)
    validate_config(config)
    out_dir = config.output_dir
    identity = identity_of(config.as_record())
    if restart:
        _move_old_run_aside(out_dir)
    elif os.path.exists(os.path.join(out_dir, run_dir.DONE)):
        check_done(out_dir, identity)
        log.info("%s is already done; nothing to do", out_dir)
        return out_dir
    os.makedirs(out_dir, exist_ok=True)
    lock = run_dir.RunLock(out_dir)
    if not lock.acquire():
        raise RunLocked(f"another process is training in {out_dir}; wait for it or stop it")
    try:
        checkpoint = os.path.join(out_dir, run_dir.CHECKPOINT)
        if os.path.exists(checkpoint):
            check_checkpoint(checkpoint, identity, out_dir)
        remove_stale_temporaries(out_dir)
    except BaseException:
        lock.release()
        raise
    try:
        for stale in (run_dir.FAILED, run_dir.DIVERGED):  # of an earlier attempt
            if os.path.exists(os.path.join(out_dir, stale)):
                os.unlink(os.path.join(out_dir, stale))
        _train_locked(config)
    except BaseException as exc:
        if not isinstance(exc, KeyboardInterrupt):
            short = one_line(exc)
            misc.atomic_write_text(os.path.join(out_dir, run_dir.FAILED), json.dumps(
                {"error": f"{type(exc).__name__}: {short}",
                 "traceback": traceback.format_exc()}, indent=2))
        raise
    finally:
        lock.release()
    return out_dir


def _move_old_run_aside(out_dir: str) -> None:
    """``--restart``: rename the old run directory aside (under its lock), if any."""
    if not os.path.isdir(out_dir):
        return
    lock = run_dir.RunLock(out_dir)
    if not lock.acquire():
        raise RunLocked(f"another process is training in {out_dir}; wait for it or stop it "
                        "before --restart")
    try:
        aside = move_aside(out_dir)
    finally:
        lock.release()
    if aside:
        log.info("--restart: moved the old run to %s", aside)


def _train_locked(config: TrainConfig) -> None:
    setup = prepare_run(config)
    start = resume_or_start(setup)
    feeds = make_feeds(setup, start.step)
    end = run_steps(setup, feeds, start)
    finish(setup, feeds, end)
