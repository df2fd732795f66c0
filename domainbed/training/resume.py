"""Where a run starts: from its checkpoint (records truncated to match), or fresh (the
``--init_from`` weights applied, then the algorithm's ``after_init`` hook)."""

import logging
import os
from dataclasses import dataclass

from domainbed.errors import DomainBedError
from domainbed.lib import misc
from domainbed.training.checkpoint import load_checkpoint
from domainbed.training.init_from import apply_init
from domainbed.training.setup import RunSetup

log = logging.getLogger("domainbed.train")


@dataclass
class StartPoint:
    """The next step to run and the number of records results.jsonl holds before it."""

    step: int = 0
    n_records: int = 0


def truncate_records(path: str, n_records: int) -> None:
    """Keep the first ``n_records`` complete lines of results.jsonl (drop later ones)."""
    if not os.path.exists(path):
        if n_records:
            raise DomainBedError(f"{path} is missing but the checkpoint expects {n_records} "
                                 "records; delete the run directory to start again")
        return
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    complete = lines[:-1]  # the last piece has no newline: incomplete
    if len(complete) < n_records:
        raise DomainBedError(f"{path} holds {len(complete)} records but the checkpoint expects "
                             f"{n_records}; delete the run directory to start again")
    misc.atomic_write_bytes(path, b"".join(line + b"\n" for line in complete[:n_records]))


def resume_from_checkpoint(setup: RunSetup) -> StartPoint:
    """Restore the algorithm, RNGs, best checkpoint and arithmetic from the checkpoint."""
    state = load_checkpoint(setup.checkpoint_path, setup.algorithm, setup.device)
    start = StartPoint(state["step"], state["n_records"])
    setup.best.load(state.get("extra") or {})
    setup.arithmetic.load(state.get("extra") or {})
    truncate_records(setup.results_path, start.n_records)
    log.info("resuming from step %d (%d records kept)", start.step, start.n_records)
    return start


def start_fresh(setup: RunSetup) -> StartPoint:
    """Drop records of an attempt that never checkpointed, apply ``--init_from``, and call
    the algorithm's ``after_init`` hook (e.g. freeze the featurizer for lp_steps)."""
    if os.path.exists(setup.results_path):
        os.unlink(setup.results_path)
    config = setup.config
    if config.init_from:
        loaded = apply_init(setup.algorithm, config.init_from, config.init_part, setup.device)
        log.info("initialised %s from %s", " and ".join(loaded), config.init_from)
    setup.algorithm.after_init(setup.init)
    return StartPoint()


def resume_or_start(setup: RunSetup) -> StartPoint:
    """Resume when the run directory holds a checkpoint, else start fresh."""
    if os.path.exists(setup.checkpoint_path):
        return resume_from_checkpoint(setup)
    return start_fresh(setup)
