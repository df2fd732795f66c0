"""The on-disk contract of one training run directory.

- ``results.jsonl``: one JSON record per evaluation.
- ``out.txt`` / ``err.txt``: the run's log and errors.
- ``model.safetensors``: the final model (JSON metadata: args, hparams, shapes).
- ``model_best.safetensors``: the weights at the evaluation with the highest ID-validation
  accuracy (mean ``env{j}_out_acc`` over training envs; replaced only when strictly better,
  so ties keep the earlier step); metadata ``best_checkpoint: {"step", "id_val_acc"}``.
  Not written by algorithms whose model is an average over the trajectory (MA, SWAD).
- ``checkpoint.safetensors``: the full training state for resuming (removed once done).
- ``done``: written last, when the run has finished.
- ``failed``: JSON ``{"error", "traceback"}`` when the last attempt raised.
- ``diverged``: JSON ``{"step", "nonfinite"}`` when a step's loss was NaN or infinite: the
  run stopped there and finished (``done``) without a final model; its last record says
  ``"diverged": true``.
- ``.lock``: held (``flock``) by the process that is training in this directory.
- ``progress.json``: ``{"step", "n_steps", "time"}``, rewritten about once a second while
  training (steps done so far), for launchers that show progress.
- ``slurm_job``: the SLURM job id of the last submission (written by the slurm launcher), so
  that a job still waiting in the queue is not submitted twice.

Reading: ``find_run_dirs`` (run directories under a folder), ``read_records`` /
``read_records_counted`` (every record of ``results.jsonl``; a torn last line is skipped),
``last_record`` / ``first_record`` and ``run_args`` (a run's recorded args and hparams).
"""

import errno
import fcntl
import json
import os
import logging
import shutil
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from domainbed.lib import jsonl

RESULTS = "results.jsonl"
OUT = "out.txt"
ERR = "err.txt"
MODEL = "model.safetensors"
MODEL_BEST = "model_best.safetensors"
CHECKPOINT = "checkpoint.safetensors"
DONE = "done"
FAILED = "failed"
DIVERGED = "diverged"
LOCK = ".lock"
PROGRESS = "progress.json"
SLURM_JOB = "slurm_job"

DONE_STATE, RUNNING_STATE, FAILED_STATE = "Done", "Running", "Failed"
INCOMPLETE_STATE, NOT_LAUNCHED_STATE = "Incomplete", "Not launched"
QUEUED_STATE = "Queued"  # submitted to SLURM and still in its queue (see sweep.actions)

# any of these files marks a directory as a run directory (not a folder of runs); out.txt and
# err.txt are left out: a sweep folder may hold logs of those names too
RUN_MARKERS = (RESULTS, DONE, CHECKPOINT, FAILED, LOCK, MODEL)
DEFAULT_MAX_DEPTH = 2

log = logging.getLogger(__name__)


class ProgressFile:
    """Writes ``progress.json`` at most every ``min_interval`` seconds (and at the end)."""

    def __init__(self, run_dir: str, n_steps: int, min_interval: float = 1.0):
        self.path = os.path.join(run_dir, PROGRESS)
        self.n_steps = n_steps
        self.min_interval = min_interval
        self._last = 0.0

    def update(self, steps_done: int) -> None:
        now = time.time()
        if now - self._last < self.min_interval and steps_done < self.n_steps:
            return
        self._last = now
        from domainbed.lib.misc import atomic_write_text
        try:
            atomic_write_text(self.path, json.dumps(
                {"step": steps_done, "n_steps": self.n_steps, "time": now}))
        except OSError:
            pass  # progress is a convenience: never fail a run for it


def read_progress(run_dir: str) -> Optional[dict]:
    """``progress.json`` of a run, or None when absent or unreadable."""
    try:
        with open(os.path.join(run_dir, PROGRESS), encoding="utf-8") as f:
            progress = json.load(f)
        return progress if isinstance(progress, dict) else None
    except (OSError, ValueError):
        return None


def write_submission(run_dir: str, job_id: str) -> None:
    """Record the scheduler's job id of the submission that will train ``run_dir``."""
    from domainbed.lib.misc import atomic_write_text
    os.makedirs(run_dir, exist_ok=True)
    atomic_write_text(os.path.join(run_dir, SLURM_JOB), str(job_id) + "\n")


def read_submission(run_dir: str) -> Optional[str]:
    """The job id recorded by ``write_submission``, or None."""
    try:
        with open(os.path.join(run_dir, SLURM_JOB), encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


class RunLock:
    """An exclusive, non-blocking ``flock`` on ``<run_dir>/.lock``; released at exit or death."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, LOCK)
        self._fd: Optional[int] = None

    def acquire(self) -> bool:
        for _ in range(5):
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    return False
                raise
            # the lock holds only if its file is still the one at the path: a directory
            # being deleted was renamed away with its lock file; then lock the new path
            if _same_file(fd, self.path):
                self._fd = fd
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                return True
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        return False

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


DELETING_PREFIX = ".deleting-"


def delete_locked(run_dir: str) -> None:
    """Delete ``run_dir``, whose ``RunLock`` the caller holds: it is first renamed to a
    hidden name beside it (with its lock file, which stays held), so that a run starting
    meanwhile gets a fresh directory and lock instead of sharing this one, and nothing can
    write into the tree while it is removed."""
    parent, name = os.path.split(os.path.abspath(run_dir))
    aside = os.path.join(parent, f"{DELETING_PREFIX}{name}-{os.getpid()}")
    os.rename(run_dir, aside)
    shutil.rmtree(aside)


def is_running(run_dir: str) -> bool:
    """True while some process holds the run's lock."""
    if not os.path.exists(os.path.join(run_dir, LOCK)):
        return False
    lock = RunLock(run_dir)
    if lock.acquire():
        lock.release()
        return False
    return True


def read_failure(run_dir: str) -> Optional[dict]:
    path = os.path.join(run_dir, FAILED)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"error": "unreadable failure file", "traceback": ""}


def read_divergence(run_dir: str) -> Optional[dict]:
    """The ``diverged`` marker of a finished run (``{"step", "nonfinite"}``), or None."""
    path = os.path.join(run_dir, DIVERGED)
    try:
        with open(path, encoding="utf-8") as f:
            marker = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"step": None, "nonfinite": {}}
    return marker if isinstance(marker, dict) else {"step": None, "nonfinite": {}}


def run_state(run_dir: str) -> str:
    """One of Done, Running, Failed, Incomplete, Not launched."""
    if not os.path.isdir(run_dir):
        return NOT_LAUNCHED_STATE
    if os.path.exists(os.path.join(run_dir, DONE)):
        return DONE_STATE
    if is_running(run_dir):
        return RUNNING_STATE
    if os.path.exists(os.path.join(run_dir, FAILED)):
        return FAILED_STATE
    return INCOMPLETE_STATE


# ----------------------------------------------------------------------------- reading

def find_run_dirs(top: str, max_depth: Optional[int] = DEFAULT_MAX_DEPTH,
                  markers: Iterable[str] = RUN_MARKERS,
                  skip: Iterable[str] = ()) -> List[Tuple[str, bool]]:
    """``(run_dir, has_done)`` for each run directory under ``top``, in sorted order.

    A run directory is a directory holding one of ``markers``; it is looked for in ``top``
    itself and in sub-folders down to ``max_depth`` levels (None: any depth), never inside a
    run directory, nor in hidden folders or in the folders of ``skip`` (compared by real path).
    Symbolic links to folders are followed, each folder once (a symlink loop, or two links to
    one folder, do not count its runs twice); a folder that cannot be listed is skipped with
    a warning.
    """
    markers = tuple(markers)
    skipped = {os.path.realpath(path) for path in skip}
    found: List[Tuple[str, bool]] = []
    visited = set()  # real paths: a folder reached twice (a symlink loop, two links) once

    def visit(path: str, depth: int) -> None:
        real = os.path.realpath(path)
        if real in visited or (skipped and real in skipped):
            return
        visited.add(real)
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError as exc:
            log.warning("cannot list %s: %s", path, exc)
            return
        names = {entry.name for entry in entries}
        if any(name in names for name in markers):
            found.append((path, DONE in names))
            return
        if max_depth is not None and depth >= max_depth:
            return
        for entry in sorted(entries, key=lambda e: e.name):
            # is_dir() follows symlinks like os.path.isdir, from the listing when it can
            if not entry.name.startswith(".") and _is_dir(entry):
                visit(os.path.join(path, entry.name), depth + 1)

    visit(top, 0)
    return found


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def read_records_counted(run_dir: str) -> Tuple[List[dict], int]:
    """``(records, n_bad_lines)`` of ``<run_dir>/results.jsonl`` (see ``domainbed.lib.jsonl``:
    lines that are not JSON objects are skipped with a warning); ``([], 0)`` without it."""
    try:
        return jsonl.read_records_file(os.path.join(run_dir, RESULTS))
    except FileNotFoundError:
        return [], 0


def read_records(run_dir: str) -> List[dict]:
    """Every record of ``<run_dir>/results.jsonl`` in file order; [] without the file."""
    return read_records_counted(run_dir)[0]


def last_record(run_dir: str) -> Optional[dict]:
    """The last record of the run's ``results.jsonl`` (a torn last line skipped), or None."""
    records = read_records(run_dir)
    return records[-1] if records else None


def _has_args(record: dict) -> bool:
    return isinstance(record.get("args"), dict)


def first_record(run_dir: str,
                 where: Callable[[dict], bool] = _has_args) -> Optional[dict]:
    """The first record of the run's ``results.jsonl`` for which ``where`` holds (default:
    the first holding a dict ``args``), or None; reads no further than that record."""
    try:
        f = open(os.path.join(run_dir, RESULTS), "rb")
    except FileNotFoundError:
        return None
    with f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn last line of a killed run, a blank line
            if isinstance(record, dict) and where(record):
                return record
    return None


def run_args(run_dir: str) -> Dict[str, Any]:
    """``{"args", "hparams"}`` of the first record holding ``args`` (hparams ``{}`` when it
    has none), or ``{}`` when no record does."""
    record = first_record(run_dir)
    if record is None:
        return {}
    return {"args": record["args"], "hparams": record.get("hparams") or {}}
