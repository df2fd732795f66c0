"""The steps of a run: updates, and at every checkpoint step an evaluation record, the best
checkpoint and a resumable checkpoint.

In this order: the data side of the loop (``make_feeds``: step counts, training iterators
from the start step, and the split scorer), the loop (``run_steps``), one step and one
evaluation, divergence, and what a run writes per evaluation (``results.jsonl`` lines, the
log table).

Divergence: a run whose loss becomes NaN or infinite stops at that step instead of
training on. The step's values (what ``update`` returned) are checked after every step. The
first non-finite value ends the run as finished: a last record scores every split of the
diverged model (so tables treat it as upstream treats a run whose accuracy collapsed) and
says ``"diverged": true``; the ``diverged`` marker holds the step and the values; no final
model is written (NaN weights must not enter a soup or a pool); ``done`` follows as for any
finished run, so a sweep does not launch it again.

Called by ``run.train`` after ``start.resume_or_start``; next: ``evaluation`` (what each
evaluation scores, and the best checkpoint), then ``run.finish`` (the end of the run).
"""

import json
import logging
import math
import os
import resource
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

import torch

from domainbed.lib import misc, run_dir
from domainbed.lib.fast_data_loader import infinite_loader
from domainbed.lib.weights import save_weights
from domainbed.training.evaluation import SplitScorer, id_val_accuracy, policy_of_test_in
from domainbed.training.setup import RunSetup
from domainbed.training.start import StartPoint, save_checkpoint

log = logging.getLogger("domainbed.train")


# ---------------------------------------------------------------- the data side

@dataclass
class Feeds:
    n_steps: int
    checkpoint_freq: int
    steps_per_epoch: float
    train_iters: List[Any]  # one infinite minibatch iterator per training env
    uda_iters: List[Any]  # one per unlabeled test split (domain adaptation)
    scorer: SplitScorer


def make_feeds(setup: RunSetup, start_step: int) -> Feeds:
    """The run's step counts (the dataset's defaults unless given), its loaders positioned
    at ``start_step`` (a resumed run draws the batches an uninterrupted one would) and its
    scorer."""
    config, dataset, splits = setup.config, setup.dataset, setup.splits
    n_steps = config.steps if config.steps is not None else dataset.N_STEPS
    checkpoint_freq = config.checkpoint_freq or dataset.CHECKPOINT_FREQ
    n_workers = min(dataset.N_WORKERS, config.num_workers if config.num_workers is not None
                    else dataset.N_WORKERS)
    batch_size = setup.hparams["batch_size"]
    train_iters = [infinite_loader(splits.in_splits[i][0], batch_size, config.seed, i,
                                   start_step, n_workers, splits.in_splits[i][1])
                   for i in setup.train_envs]
    uda_iters = [infinite_loader(split, batch_size, config.seed, 1000 + k, start_step,
                                 n_workers, w) for k, (split, w) in enumerate(splits.uda_splits)]
    scorer = SplitScorer(splits, len(dataset), setup.test_envs, n_workers, setup.device,
                         config.full_evaluation, config.seed,
                         policy_of_test_in(setup.test_envs, config.full_evaluation,
                                           config.score_test_once, setup.best.enabled))
    steps_per_epoch = min(len(splits.in_splits[i][0]) / batch_size for i in setup.train_envs)
    return Feeds(n_steps, checkpoint_freq, steps_per_epoch, train_iters, uda_iters, scorer)


# ---------------------------------------------------------------- the steps

@dataclass
class LoopEnd:
    """The last step run (``start - 1`` when none ran), the records written so far, and
    whether the run diverged (a non-finite loss: see the module docstring)."""

    last_step: int
    n_records: int
    diverged: bool = False


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


# ---------------------------------------------------------------- divergence

def nonfinite(values: Mapping[str, Any]) -> Dict[str, str]:
    """The values of a step that are NaN or infinite, as text (``{"loss": "nan"}``)."""
    bad = {}
    for key, value in values.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(number):
            bad[key] = repr(number)
    return bad


def divergence_line(step: int, bad: Mapping[str, str]) -> str:
    what = ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))
    return (f"diverged at step {step}: non-finite {what}; the run stops here and ends as "
            "diverged (its last record says so; no final model is written)")


def diverged_record(setup, feeds, step: int, step_vals: Dict[str, List[float]],
                    bad: Mapping[str, str]) -> Dict[str, Any]:
    """The last record of a diverged run: the step values since the last evaluation (the
    non-finite ones included), every split scored, ``diverged`` and its values."""
    record: Dict[str, Any] = {"step": step, "epoch": step / feeds.steps_per_epoch}
    for key, vals in step_vals.items():
        record[key] = sum(vals) / len(vals)
    record.update(feeds.scorer.score_all(setup.algorithm, step))
    record["evaluation"] = "full"
    record["diverged"] = True
    record["nonfinite"] = dict(bad)
    record["mem_gb"] = peak_mem_gb(setup.device)
    return record


def write_marker(out_dir: str, step: int, bad: Mapping[str, str]) -> None:
    misc.atomic_write_text(os.path.join(out_dir, run_dir.DIVERGED),
                           json.dumps({"step": step, "nonfinite": dict(bad)}) + "\n")


# ---------------------------------------------------------------- records
# What a run writes per evaluation: results.jsonl lines and the log table.

def peak_mem_gb(device: torch.device) -> float:
    """Peak GPU memory allocated (on CUDA), else the process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 1024 ** 3
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def append_record(path: str, record: Dict[str, Any]) -> None:
    """Append one JSON line (sorted keys) and fsync it."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def log_record(record: Dict[str, Any], last_keys: Optional[List[str]]) -> List[str]:
    """Log the record as a table row (with a header when the keys changed)."""
    keys = sorted(record)
    if keys != last_keys:
        log.info(misc.print_row(keys, colwidth=12))
    log.info(misc.print_row([record[k] for k in keys], colwidth=12))
    return keys


def with_run_info(record: Dict[str, Any], hparams: Dict[str, Any],
                  args_record: Dict[str, Any], init: Optional[dict]) -> Dict[str, Any]:
    """The results.jsonl line of ``record``: plus the run's hparams, args and init."""
    record = dict(record, hparams=hparams, args=args_record)
    if init is not None:
        record["init"] = init
    return record

