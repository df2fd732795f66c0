"""One training run directory, resumable after a kill or a preemption: ``train(config)``.

Read a run from here: ``train`` checks the config and the run directory (its identity and
its lock), then runs the stages, one module each: ``setup`` (names, hparams, dataset,
splits, algorithm, arithmetic), ``start`` (checkpoint, or fresh start with
``--init_from``), ``loop`` (loaders from the start step, steps, evaluation records,
checkpoints; each evaluation scores what ``evaluation`` says), and ``finish`` below (final
record, model, the selected record's test score, ``done``).

A run's identity: the arguments that define what it computes (``setup.identity_of``),
checked on every resume. A run directory holds one run. Resuming it with other arguments
would mix two runs in one ``results.jsonl`` (other splits, another lr under the old
optimiser state), and a finished run relaunched with other arguments would pretend to be
the run asked for. The identity is stored in the checkpoint's metadata (and read back from
the records of a finished run); a difference stops the run with one line naming the
arguments, and ``--restart`` moves the old directory aside.

The selected record's test score (``score_selected_record``): after the last step, the test
env's ``in`` score of the record training-domain validation selects (the first best on ID
validation), scored once from the best checkpoint's weights and written into that record of
``results.jsonl`` (``--score_test_once``: the ``selected`` policy of
``evaluation.policy_of_test_in``). The weights in ``model_best.safetensors`` are those of
that record and a split's score does not depend on when it is scored (``evaluation``), so
the record ends up as a record that was scored at its step; it also lists the keys scored
later, under ``scored_after_training``. Runs count only once ``done`` exists, which is
written after this.

Next: ``setup``.
"""

import json
import logging
import os
import traceback
from typing import Any, Dict, List, Mapping, Optional, Union

from domainbed.errors import DomainBedError, one_line
from domainbed.lib import misc, run_dir
from domainbed.lib.atomic import remove_stale_temporaries
from domainbed.lib.weights import load_file, save_weights
from domainbed.training.config import TrainConfig
from domainbed.training.evaluation import BestCheckpoint  # noqa: F401 (re-exported)
from domainbed.training.loop import (Feeds, LoopEnd, append_record, log_record, make_feeds,
                                     peak_mem_gb, run_steps, with_run_info)
from domainbed.training.setup import RunSetup, identity_of, prepare_run
from domainbed.training.setup import resolve_hparams  # noqa: F401 (re-exported)
from domainbed.training.start import resume_or_start
from domainbed.training.validate import validate_config

log = logging.getLogger("domainbed.train")


class RunLocked(DomainBedError):
    """Another process is training in the same run directory."""


def as_config(config: Union[TrainConfig, Any]) -> TrainConfig:
    """A TrainConfig as is; the namespace of an older caller converted."""
    if isinstance(config, TrainConfig):
        return config
    return TrainConfig.from_namespace(config)


def train(config: Union[TrainConfig, Any],
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


# ---------------------------------------------------------------- the run's identity

METADATA_KEY = "run_identity"
_ABSENT = object()


class RunIdentityError(DomainBedError):
    """A run directory holds a run of other arguments."""


def differences(stored: Mapping[str, Any], current: Mapping[str, Any],
                prefix: str = "") -> List[str]:
    """``name: A there, B here`` for each argument whose value differs (a name only one of
    the two knows counts when its value is not the default None/False); dicts (hparams)
    are compared key by key."""
    out = []
    for key in sorted(set(stored) | set(current)):
        there, here = stored.get(key, _ABSENT), current.get(key, _ABSENT)
        if isinstance(there, dict) and isinstance(here, dict):
            out += differences(there, here, f"{prefix}{key}.")
            continue
        if there == here or (there is _ABSENT and here in (None, False)) or \
                (here is _ABSENT and there in (None, False)):
            continue
        out.append(f"{prefix}{key}: {_short(there)} there, {_short(here)} here")
    return out


def _short(value: Any) -> str:
    if value is _ABSENT:
        return "unset"
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 50 else text[:47] + "..."


def way_out(out_dir: str) -> str:
    return (f"use a new --output_dir, or add --restart to move {out_dir} aside and start "
            "again")


def check_checkpoint(checkpoint_path: str, identity: Mapping[str, Any], out_dir: str) -> None:
    """Raise RunIdentityError when the checkpoint was written by a run of other arguments
    (a checkpoint from before identities were stored passes)."""
    from domainbed.lib.weights import read_metadata
    stored = read_metadata(checkpoint_path).get(METADATA_KEY)
    if not isinstance(stored, dict):
        return
    diff = differences(stored, identity)
    if diff:
        raise RunIdentityError(
            f"{out_dir} holds an unfinished run of other arguments ({'; '.join(diff)}); "
            f"resuming would mix two runs: {way_out(out_dir)}")


def check_done(out_dir: str, identity: Mapping[str, Any]) -> None:
    """Raise RunIdentityError when the finished run in ``out_dir`` had other arguments."""
    from domainbed.lib.run_dir import run_args
    args = run_args(out_dir).get("args")
    if not isinstance(args, dict):
        return
    diff = differences(identity_of(args), identity)
    if diff:
        raise RunIdentityError(
            f"{out_dir} is already done, with other arguments ({'; '.join(diff)}); nothing "
            f"was run: {way_out(out_dir)}")


def move_aside(out_dir: str) -> Optional[str]:
    """Rename ``out_dir`` to the first free ``<parent>/.<name>.old-<n>`` (hidden, so that
    sweeps and tables no longer count it); returns the new path (None when there was
    nothing to move)."""
    if not os.path.isdir(out_dir) or not os.listdir(out_dir):
        return None
    parent, name = os.path.split(os.path.abspath(out_dir))
    n = 1
    while os.path.exists(os.path.join(parent, f".{name}.old-{n}")):
        n += 1
    target = os.path.join(parent, f".{name}.old-{n}")
    os.rename(out_dir, target)
    return target


# ---------------------------------------------------------------- the end of a run

def finish(setup: RunSetup, feeds: Feeds, end: LoopEnd) -> None:
    """Write the final record (if any), the final model, the selected record's deferred
    test scores (the best checkpoint's weights are loaded for them: last), ``done``; drop
    the checkpoint unless ``--keep_checkpoint``."""
    config, out_dir = setup.config, setup.out_dir
    record = None if end.diverged else final_record(setup, feeds, end)
    if record is not None:
        log.info("final averaged model:")
        log_record(record, None)
        append_record(setup.results_path, with_run_info(record, setup.hparams,
                                                        setup.args_record, setup.init))
    if not config.skip_model_save and not end.diverged:  # NaN weights: no final model
        save_weights(os.path.join(out_dir, run_dir.MODEL), setup.algorithm.state_dict(),
                     setup.metadata)
    score_selected_record(setup, feeds)
    misc.atomic_write_text(os.path.join(out_dir, run_dir.DONE), "done\n")
    if os.path.exists(setup.checkpoint_path) and not config.keep_checkpoint:
        os.unlink(setup.checkpoint_path)
    log.info("done: %s", out_dir)


def final_record(setup: RunSetup, feeds: Feeds, end: LoopEnd) -> Optional[Dict[str, Any]]:
    """The record of the algorithm's ``final_evaluation`` hook (every split scored once
    more), or None when the hook returns None (the default) or the run wrote no record."""
    final = setup.algorithm.final_evaluation() if end.n_records else None
    if final is None:
        return None
    last_step = end.last_step
    record: Dict[str, Any] = {"step": last_step, "epoch": last_step / feeds.steps_per_epoch,
                              "final_average": True}
    if last_step < feeds.n_steps - 1:
        record["stopped_early"] = True
    record.update(feeds.scorer.score_all(setup.algorithm, last_step))
    record["evaluation"] = "full"
    record.update(final)
    record["mem_gb"] = peak_mem_gb(setup.device)
    return record


SCORED_AFTER_TRAINING = "scored_after_training"


def score_selected_record(setup: RunSetup, feeds: Feeds) -> None:
    """Fill in the deferred test scores of the best record (nothing to do when the run
    does not defer them, kept no best record, or the record holds them already: the last
    step is scored in full, and a resumed run may have written them before)."""
    scorer, best = feeds.scorer, setup.best
    if not scorer.defer_test_in or best.step is None:
        return
    names = scorer.test_in_splits()
    keys = [name + "_acc" for name in names]
    with open(setup.results_path, "rb") as f:
        lines = f.read().split(b"\n")
    index = _selected_line(lines, best.step)
    if index is None:
        raise DomainBedError(f"{setup.results_path} has no record of step {best.step}, the "
                             "best on ID validation; delete the run directory to start again")
    record = json.loads(lines[index])
    if all(record.get(key) is not None for key in keys):
        return
    state, metadata = load_file(best.path, device=setup.device)
    kept = (metadata.get("best_checkpoint") or {}).get("step")
    if kept != best.step:
        raise DomainBedError(
            f"{best.path} holds the weights of step {kept}, but the best record is step "
            f"{best.step} (the run was resumed and did not repeat its steps exactly); its "
            "test score cannot be computed: delete the run directory to train it again, or "
            "train with --full_evaluation")
    setup.algorithm.load_state_dict(state)
    record.update(scorer.score(setup.algorithm, names, best.step))
    record[SCORED_AFTER_TRAINING] = keys
    lines[index] = json.dumps(record, sort_keys=True).encode("utf-8")
    misc.atomic_write_bytes(setup.results_path, b"\n".join(lines))
    log.info("selected record (step %d, best on ID validation): %s", best.step,
             ", ".join(f"{key} {record[key]:.4f}" for key in keys))


def _selected_line(lines: List[bytes], step: int) -> Optional[int]:
    """The index of the training record of ``step`` (not a ``final_average`` one)."""
    for index, line in enumerate(lines):
        if line.strip():
            record = json.loads(line)
            if record.get("step") == step and not record.get("final_average"):
                return index
    return None
