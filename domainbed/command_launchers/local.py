"""The ``local`` launcher: jobs run on this machine as subprocesses (several at a time when
the machine allows it) or inside this process, showing each running job's steps."""

import logging
import time
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

from domainbed.command_launchers.core import in_process as _in_process
from domainbed.command_launchers.core import resources
from domainbed.command_launchers.core.base import Launcher, Task, as_task, register_launcher
from domainbed.command_launchers.core.failures import record_failures
from domainbed.command_launchers.core.parallel import parallel_slots, run_tasks
from domainbed.command_launchers.core.process import (StepProgress, describe_exit,
                                                      in_process_threads, polling, run_task,
                                                      thread_overrides)
from domainbed.command_launchers.core.workers import run_in_workers
from domainbed.errors import DomainBedError
from domainbed.lib.options import option

log = logging.getLogger(__name__)


@dataclass
class LocalOptions:
    """The local launcher's command-line options (``launch``'s keywords of the same names;
    None: not given)."""

    max_parallel: Optional[int] = option(
        None, metavar="N",
        help="jobs run at once (default: one per visible GPU; on a CPU-only machine 1 up to 4 "
             "cores, else one per 4 cores)")
    threads_per_job: Optional[int] = option(
        None, metavar="T",
        help="math threads of each job (default: the cores split between the jobs that run at "
             "once; an OMP_NUM_THREADS you set wins)")
    in_process: Optional[bool] = option(
        None, negative=("--no_in_process", "run every job as a subprocess"),
        help="run our training jobs in-process, isolating what each run changes globally: one "
             "at a time in the launcher's process, or on --max_parallel worker processes "
             "(torch is imported once per process, not once per job)")


@register_launcher("local")
class LocalLauncher(Launcher):
    """Runs the jobs here, ``max_parallel`` at a time (default: see
    ``resources.default_max_parallel``): as subprocesses, or in-process (``in_process``:
    in this process when one at a time, else on as many worker processes); a failing job
    is reported and the others still run."""

    options_class = LocalOptions

    def launch(self, jobs: Sequence[Any], max_parallel: Optional[int] = None,
               threads_per_job: Optional[int] = None, in_process: bool = False,
               tty: Optional[bool] = None, **options: Any) -> List[int]:
        """Run every job; returns their exit statuses in job order.

        ``in_process``: our training jobs run in-process, one at a time in this process, or
        with ``max_parallel`` above 1 on that many worker processes (``workers``).
        Raises DomainBedError for a ``max_parallel`` or ``threads_per_job`` below 1.
        """
        tasks = [as_task(j) for j in jobs]
        _check_positive("--max_parallel", max_parallel)
        _check_positive("--threads_per_job", threads_per_job)
        n_parallel = max_parallel or resources.default_max_parallel()
        n_parallel = max(1, min(n_parallel, len(tasks)))
        if in_process and n_parallel == 1:
            codes = _launch_in_process(tasks, threads_per_job, tty)
        else:
            slots, threads = parallel_slots(n_parallel, threads_per_job)
            how = f" in-process on {n_parallel} workers" if in_process else ""
            if n_parallel > 1:
                log.info("local launcher: %d jobs at a time%s%s", n_parallel, how,
                         f", {threads['OMP_NUM_THREADS']} threads each" if threads else "")
            if in_process:
                n_threads = int(threads["OMP_NUM_THREADS"]) if threads \
                    else in_process_threads(threads_per_job)
                codes = run_in_workers(tasks, slots, n_threads, tty=tty)
            else:
                codes = run_tasks(tasks, slots, tty=tty)
        record_failures(tasks, codes)  # the reason of a job that could not write it
        n_failed = sum(1 for c in codes if c != 0)
        if n_failed:
            log.warning("local launcher: %d of %d jobs failed", n_failed, len(tasks))
        return codes


def _check_positive(name: str, value: Optional[int]) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise DomainBedError(f"{name} must be a positive integer, got {value!r}; omit it for "
                             "the default")


def _launch_in_process(tasks: Sequence[Task], threads_per_job: Optional[int],
                       tty: Optional[bool]) -> List[int]:
    """One job at a time: jobs with a call inside this process, others as subprocesses."""
    codes = []
    env = thread_overrides(1, threads_per_job)
    for i, task in enumerate(tasks):
        start = time.monotonic()
        label = f"[{i + 1}/{len(tasks)}]"
        progress = StepProgress(task, label, tty=tty, outside_run=task.call is not None)
        try:
            if task.call is None:
                code = run_task(task, env or None, on_poll=progress)
            else:
                with polling(progress):
                    code = _in_process.run_in_process(task, env or None,
                                                     in_process_threads(threads_per_job))
        finally:
            progress.close()
        codes.append(code)
        log.info("%s %s %s (%.1f s)", label, describe_exit(task, code), task,
                 time.monotonic() - start)
    return codes
