"""The ``local`` launcher: jobs run on this machine as subprocesses (several at a time when
the machine allows it) or inside this process, showing each running job's steps."""

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from typing import IO, Any, Callable, Dict, List, Optional, Sequence, Tuple

from domainbed.command_launchers.base import (LAUNCHER_LOG, Launcher, Task, as_task,
                                               register_launcher)
from domainbed.command_launchers.failures import record_failures
from domainbed.errors import DomainBedError
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


@register_launcher("local")
class LocalLauncher(Launcher):
    """Runs the jobs here, ``max_parallel`` at a time (default: see
    ``resources.default_max_parallel``): as subprocesses, or in-process (``in_process``:
    in this process when one at a time, else on as many worker processes); a failing job
    is reported and the others still run."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("local launcher")
        group.add_argument("--max_parallel", type=int, default=None, metavar="N",
                           help="jobs run at once (default: one per visible GPU; on a "
                                "CPU-only machine 1 up to 4 cores, else one per 4 cores)")
        group.add_argument("--threads_per_job", type=int, default=None, metavar="T",
                           help="math threads of each job (default: the cores split between "
                                "the jobs that run at once; an OMP_NUM_THREADS you set wins)")
        group.add_argument("--in_process", dest="in_process", action="store_const",
                           const=True, default=None,
                           help="run our training jobs in-process, isolating what each run "
                                "changes globally: one at a time in the launcher's process, "
                                "or on --max_parallel worker processes (torch is imported "
                                "once per process, not once per job)")
        group.add_argument("--no_in_process", dest="in_process", action="store_const",
                           const=False, help="run every job as a subprocess")

    def options_from_args(self, args: argparse.Namespace) -> Dict[str, Any]:
        keys = ("max_parallel", "threads_per_job", "in_process")
        return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}

    def launch(self, jobs: Sequence[Any], max_parallel: Optional[int] = None,
               threads_per_job: Optional[int] = None, in_process: bool = False,
               tty: Optional[bool] = None, **options: Any) -> List[int]:
        """Run every job; returns their exit statuses in job order.

        ``in_process``: our training jobs run in-process, one at a time in this process, or
        with ``max_parallel`` above 1 on that many worker processes (``workers``).
        Raises DomainBedError for a ``max_parallel`` or ``threads_per_job`` below 1.
        """
        from domainbed.command_launchers import resources
        tasks = [as_task(j) for j in jobs]
        _check_positive("--max_parallel", max_parallel)
        _check_positive("--threads_per_job", threads_per_job)
        n_parallel = max_parallel or resources.default_max_parallel()
        n_parallel = max(1, min(n_parallel, len(tasks)))
        if in_process and n_parallel == 1:
            codes = _launch_in_process(tasks, threads_per_job, tty)
        else:
            from domainbed.command_launchers.parallel import run_tasks
            slots, threads = parallel_slots(n_parallel, threads_per_job)
            how = f" in-process on {n_parallel} workers" if in_process else ""
            if n_parallel > 1:
                log.info("local launcher: %d jobs at a time%s%s", n_parallel, how,
                         f", {threads['OMP_NUM_THREADS']} threads each" if threads else "")
            if in_process:
                from domainbed.command_launchers.workers import run_in_workers
                n_threads = int(threads["OMP_NUM_THREADS"]) if threads \
                    else _in_process_threads(threads_per_job)
                codes = run_in_workers(tasks, slots, n_threads, tty=tty)
            else:
                codes = run_tasks(tasks, slots, tty=tty)
        record_failures(tasks, codes)  # the reason of a job that could not write it
        n_failed = sum(1 for c in codes if c != 0)
        if n_failed:
            log.warning("local launcher: %d of %d jobs failed", n_failed, len(tasks))
        return codes


def parallel_slots(n_parallel: int, threads_per_job: Optional[int] = None
                   ) -> Tuple[List[Any], Dict[str, str]]:
    """The slots of ``n_parallel`` concurrent jobs (their thread variables and, with GPUs
    and several jobs, one GPU each, round robin), and the thread variables alone."""
    from domainbed.command_launchers import resources
    from domainbed.command_launchers.parallel import Slot
    threads = thread_overrides(n_parallel, threads_per_job)
    gpus = resources.visible_gpus() if n_parallel > 1 else []
    slots = []
    for s in range(n_parallel):
        env = dict(threads)
        if gpus:  # several jobs at once: spread them over the GPUs, not all on GPU 0
            env["CUDA_VISIBLE_DEVICES"] = gpus[s % len(gpus)]
        slots.append(Slot(env, f"GPU {env['CUDA_VISIBLE_DEVICES']}" if gpus else ""))
    return slots, threads


def _check_positive(name: str, value: Optional[int]) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise DomainBedError(f"{name} must be a positive integer, got {value!r}; omit it for "
                             "the default")


def thread_overrides(n_parallel: int, threads_per_job: Optional[int] = None,
                     n_cpus: Optional[int] = None) -> Dict[str, str]:
    """Thread variables for each of ``n_parallel`` concurrent jobs: ``threads_per_job`` when
    given; else nothing when the user set OMP_NUM_THREADS / MKL_NUM_THREADS (children
    inherit it) or when one job runs at a time (torch's own default); else the cores split
    evenly."""
    from domainbed.command_launchers import resources
    if threads_per_job:
        return resources.thread_env(threads_per_job)
    if any(name in os.environ for name in resources.THREAD_ENV_VARS) or n_parallel <= 1:
        return {}
    return resources.thread_env(resources.threads_per_job(n_parallel, n_cpus))


def _in_process_threads(threads_per_job: Optional[int]) -> Optional[int]:
    """Torch threads of an in-process run: as a subprocess would get them."""
    if threads_per_job:
        return threads_per_job
    try:
        return int(os.environ["OMP_NUM_THREADS"])
    except (KeyError, ValueError):
        return None  # torch's default, which this process already has


def _launch_in_process(tasks: Sequence[Task], threads_per_job: Optional[int],
                       tty: Optional[bool]) -> List[int]:
    """One job at a time: our training commands inside this process, others as
    subprocesses."""
    from domainbed.command_launchers import in_process
    codes = []
    env = thread_overrides(1, threads_per_job)
    for i, task in enumerate(tasks):
        start = time.monotonic()
        label = f"[{i + 1}/{len(tasks)}]"
        argv = in_process.train_argv(task.command)
        progress = StepProgress(task, label, tty=tty, outside_run=argv is not None)
        try:
            if argv is None:
                code = run_task(task, env or None, on_poll=progress)
            else:
                with _polling(progress):
                    code = in_process.run_in_process(task, argv, env or None,
                                                     _in_process_threads(threads_per_job))
        finally:
            progress.close()
        codes.append(code)
        log.info("%s %s %s (%.1f s)", label, describe_exit(task, code), task,
                 time.monotonic() - start)
    return codes


@contextlib.contextmanager
def _polling(on_poll: Callable[[], None]):
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
