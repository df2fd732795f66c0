"""The process toolkit of the launchers that run jobs on this machine: start a task as a
subprocess (its output appended to ``launcher.log``), wait for it, show the running job's
steps, describe how it ended, and the thread variables of concurrent jobs. ``local``,
``parallel``, ``workers``, ``in_process`` and ``multi_gpu`` build on it; it imports none of
them."""

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from typing import IO, Callable, Dict, Optional, Tuple

from domainbed.command_launchers.core import resources
from domainbed.command_launchers.core.base import LAUNCHER_LOG, Task
from domainbed.lib import run_dir

log = logging.getLogger(__name__)


POLL_SECONDS = 0.5  # how often a running job's progress.json is read
LOG_EVERY_SECONDS = 30.0  # progress lines when stderr is not a terminal


def _wait(proc: subprocess.Popen, on_poll: Optional[Callable[[], None]]) -> int:
    """Wait for ``proc``, calling ``on_poll`` every POLL_SECONDS; kill it if we are stopped."""
    try:
        while True:
            try:
                return proc.wait(timeout=POLL_SECONDS if on_poll else None)
            except subprocess.TimeoutExpired:
                on_poll()
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def start_task(task: Task, env_overrides: Optional[Dict[str, str]] = None
               ) -> Tuple[subprocess.Popen, Optional[IO[bytes]]]:
    """Start one task; returns its process and the open ``launcher.log`` (None without an
    output directory), which the caller closes once the process has ended.

    The child's stdout and stderr are appended to ``<output_dir>/launcher.log`` when the
    task has an output directory (the training run writes its own out.txt / err.txt too).
    """
    env = None
    if env_overrides:
        env = dict(os.environ)
        env.update(env_overrides)
    if not task.output_dir:
        return subprocess.Popen(task.command, env=env, stdin=subprocess.DEVNULL), None
    out = open_launcher_log(task, env_overrides)
    try:
        return subprocess.Popen(task.command, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT), out
    except BaseException:
        out.close()
        raise


def open_launcher_log(task: Task, env_overrides: Optional[Dict[str, str]] = None,
                      how: str = "") -> IO[bytes]:
    """``<output_dir>/launcher.log`` opened for appending, after a header line that names
    the command (and how it runs, e.g. ``in-process``)."""
    os.makedirs(task.output_dir, exist_ok=True)
    out = open(os.path.join(task.output_dir, LAUNCHER_LOG), "ab")
    header = f"=== {datetime.now().isoformat(timespec='seconds')} {task.command}"
    if how:
        header += f" {how}"
    if env_overrides:
        header += f" env={env_overrides}"
    out.write((header + "\n").encode())
    out.flush()
    return out


def run_task(task: Task, env_overrides: Optional[Dict[str, str]] = None,
             on_poll: Optional[Callable[[], None]] = None) -> int:
    """Run one task to completion and return its exit status (negative: killed by a signal).

    Output goes to ``<output_dir>/launcher.log`` as with ``start_task``. ``on_poll`` is
    called about twice a second while the task runs.
    """
    proc, out = start_task(task, env_overrides)
    try:
        return _wait(proc, on_poll)
    finally:
        if out is not None:
            out.close()


class StepProgress:
    """Shows the steps of the running job from its ``progress.json``: a tqdm bar on a
    terminal, else a log line at most every LOG_EVERY_SECONDS.

    ``outside_run``: the job runs inside this process, which it may have redirected (its
    stdout / stderr, the ``domainbed`` loggers): the bar then draws on the stderr of the
    moment this object was made, and log lines go straight to the root logger's handlers.
    """

    def __init__(self, task: Task, label: str, tty: Optional[bool] = None,
                 outside_run: bool = False):
        self.task = task
        self.label = label
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.bar = None
        self._last_log = time.monotonic()
        self._stream = sys.stderr
        self._outside_run = outside_run

    def __call__(self) -> None:
        progress = run_dir.read_progress(self.task.output_dir) if self.task.output_dir else None
        if not progress or "step" not in progress or "n_steps" not in progress:
            return
        step, total = int(progress["step"]), int(progress["n_steps"])
        if self.tty:
            if self.bar is None:
                from tqdm import tqdm
                self.bar = tqdm(total=total, desc=self.label, unit="step", leave=False,
                                file=self._stream)
            self.bar.n = step
            self.bar.refresh()
        elif time.monotonic() - self._last_log >= LOG_EVERY_SECONDS:
            self._last_log = time.monotonic()
            if self._outside_run and log.isEnabledFor(logging.INFO):
                record = log.makeRecord(log.name, logging.INFO, __file__, 0, "%s step %d/%d",
                                        (self.label, step, total), None)
                logging.getLogger().handle(record)
            else:
                log.info("%s step %d/%d", self.label, step, total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def describe_exit(task: Task, returncode: int) -> str:
    """One line: how the job ended and where to look."""
    if returncode == 0:
        return "done"
    how = f"killed by signal {-returncode}" if returncode < 0 else f"exit {returncode}"
    where = f"; see {task.output_dir}" if task.output_dir else ""
    return f"FAILED ({how}{where})"


def thread_overrides(n_parallel: int, threads_per_job: Optional[int] = None,
                     n_cpus: Optional[int] = None) -> Dict[str, str]:
    """Thread variables for each of ``n_parallel`` concurrent jobs: ``threads_per_job`` when
    given; else nothing when the user set OMP_NUM_THREADS / MKL_NUM_THREADS (children
    inherit it) or when one job runs at a time (torch's own default); else the cores split
    evenly."""
    if threads_per_job:
        return resources.thread_env(threads_per_job)
    if any(name in os.environ for name in resources.THREAD_ENV_VARS) or n_parallel <= 1:
        return {}
    return resources.thread_env(resources.threads_per_job(n_parallel, n_cpus))


def in_process_threads(threads_per_job: Optional[int]) -> Optional[int]:
    """Torch threads of an in-process run: as a subprocess would get them."""
    if threads_per_job:
        return threads_per_job
    try:
        return int(os.environ["OMP_NUM_THREADS"])
    except (KeyError, ValueError):
        return None  # torch's default, which this process already has


@contextlib.contextmanager
def polling(on_poll: Callable[[], None]):
    """Call ``on_poll`` every POLL_SECONDS from a thread while the body runs (the body being
    an in-process training run, which holds the main thread)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(POLL_SECONDS):
            try:
                on_poll()
            except Exception:  # progress is a convenience: never disturb the run
                pass
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
