"""The step loop: updates, and at every checkpoint step an evaluation record, the best
checkpoint and a resumable checkpoint."""

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from domainbed.lib import run_dir
from domainbed.lib.weights import save_weights
from domainbed.training.checkpoint import save_checkpoint
from domainbed.training.divergence import (divergence_line, diverged_record, nonfinite,
                                           write_marker)
from domainbed.training.evaluation_plan import id_val_accuracy
from domainbed.training.feeds import Feeds
from domainbed.training.records import append_record, log_record, peak_mem_gb, with_run_info
from domainbed.training.resume import StartPoint
from domainbed.training.setup import RunSetup

log = logging.getLogger("domainbed.train")


@dataclass
class LoopEnd:
    """The last step run (``start - 1`` when none ran), the records written so far, and
    whether the run diverged (a non-finite loss: see ``divergence``)."""

    last_step: int
    n_records: int
    diverged: bool = False


def _update(setup: RunSetup, feeds: Feeds) -> Dict[str, Any]:
    """One training step on the next minibatch of every env; the algorithm's values."""
    device, arithmetic = setup.device, setup.arithmetic
    minibatches = [(arithmetic.batch(x.to(device)), y.to(device))
                   for x, y in (next(it) for it in feeds.train_iters)]
    unlabeled = [arithmetic.batch(next(it)[0].to(device)) for it in feeds.uda_iters] or None
    with arithmetic.autocast():
        return setup.algorithm.update(minibatches, unlabeled)


def evaluation_record(setup: RunSetup, feeds: Feeds, step: int,
                      step_vals: Dict[str, List[float]]) -> Dict[str, Any]:
    """The record of an evaluation at ``step``: means of the step values since the last
    one, the scored splits, the algorithm's ``on_evaluation`` values and peak memory."""
    record: Dict[str, Any] = {"step": step, "epoch": step / feeds.steps_per_epoch}
    for key, vals in step_vals.items():
        record[key] = sum(vals) / len(vals)
    best, train_envs = setup.best, setup.train_envs
    accs, complete = feeds.scorer.evaluate(
        setup.algorithm, step, feeds.n_steps,
        lambda a: best.is_improvement(id_val_accuracy(a, train_envs)))
    record.update(accs)
    record["evaluation"] = "full" if complete else "selection"
    # e.g. SWAD's selector needs the validation loss (the loaders are built on first use)
    record.update(setup.algorithm.on_evaluation(record, feeds.scorer.val_loaders()) or {})
    record["mem_gb"] = peak_mem_gb(setup.device)
    return record


def _save_after_evaluation(setup: RunSetup, record: Dict[str, Any], step: int,
                           n_records: int) -> None:
    """The best checkpoint, the per-step model (when asked) and the resumable checkpoint."""
    config, algorithm = setup.config, setup.algorithm
    setup.best.observe(algorithm, record, setup.train_envs)
    if config.save_model_every_checkpoint and not config.skip_model_save:
        save_weights(os.path.join(setup.out_dir, f"model_step{step}.safetensors"),
                     algorithm.state_dict(), setup.metadata)
    save_checkpoint(setup.checkpoint_path, algorithm, step + 1, n_records,
                    extra=dict(setup.best.state(), **setup.arithmetic.state()),
                    identity=setup.identity)


def run_steps(setup: RunSetup, feeds: Feeds, start: StartPoint) -> LoopEnd:
    """Train from ``start`` to the last step, or until the algorithm's ``stop_training``
    hook says so (e.g. SWAD once its valley is over)."""
    n_steps, n_records = feeds.n_steps, start.n_records
    step_vals: Dict[str, List[float]] = {}
    last_keys: Optional[List[str]] = None
    progress = run_dir.ProgressFile(setup.out_dir, n_steps)
    last_step = start.step - 1
    for step in range(start.step, n_steps):
        if setup.algorithm.stop_training():
            break
        last_step = step
        step_start = time.time()
        values = _update(setup, feeds)
        step_vals.setdefault("step_time", []).append(time.time() - step_start)
        for key, value in values.items():
            step_vals.setdefault(key, []).append(value)
        progress.update(step + 1)
        bad = nonfinite(values)
        if bad:  # never train on from NaN weights: the run ends here, as diverged
            log.error("%s", divergence_line(step, bad))
            record = diverged_record(setup, feeds, step, step_vals, bad)
            append_record(setup.results_path, with_run_info(record, setup.hparams,
                                                            setup.args_record, setup.init))
            write_marker(setup.out_dir, step, bad)
            return LoopEnd(step, n_records + 1, diverged=True)

        if step % feeds.checkpoint_freq == 0 or step == n_steps - 1:
            record = evaluation_record(setup, feeds, step, step_vals)
            last_keys = log_record(record, last_keys)
            append_record(setup.results_path, with_run_info(record, setup.hparams,
                                                            setup.args_record, setup.init))
            n_records += 1
            step_vals = {}
            _save_after_evaluation(setup, record, step, n_records)
    if last_step < n_steps - 1:
        log.info("%s stopped training after step %d of %d", setup.config.algorithm,
                 last_step, n_steps)
    return LoopEnd(last_step, n_records)
