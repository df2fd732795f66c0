"""Run tasks as concurrent subprocesses, each in a slot: the environment one concurrent run
gets (its share of the CPU threads, its GPU). A slot runs one task at a time; a task starts
as soon as a slot is free. Used by the ``local`` and ``multi_gpu`` launchers.
"""

import logging
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

from domainbed.command_launchers.core import process as _process
from domainbed.command_launchers.core import resources
from domainbed.command_launchers.core.base import Task
from domainbed.command_launchers.core.process import (StepProgress, describe_exit, start_task,
                                                      thread_overrides)
from domainbed.lib import run_dir

log = logging.getLogger(__name__)


@dataclass
class Slot:
    """What one concurrent run gets: environment overrides, and a label for its log lines
    (e.g. ``GPU 3``)."""

    env: Dict[str, str] = field(default_factory=dict)
    label: str = ""


def parallel_slots(n_parallel: int, threads_per_job: Optional[int] = None
                   ) -> Tuple[List[Any], Dict[str, str]]:
    """The slots of ``n_parallel`` concurrent jobs (their thread variables and, with GPUs
    and several jobs, one GPU each, round robin), and the thread variables alone."""
    threads = thread_overrides(n_parallel, threads_per_job)
    gpus = resources.visible_gpus() if n_parallel > 1 else []
    slots = []
    for s in range(n_parallel):
        env = dict(threads)
        if gpus:  # several jobs at once: spread them over the GPUs, not all on GPU 0
            env["CUDA_VISIBLE_DEVICES"] = gpus[s % len(gpus)]
        slots.append(Slot(env, f"GPU {env['CUDA_VISIBLE_DEVICES']}" if gpus else ""))
    return slots, threads


class _Run:
    """A started task: its process, its log file, and a thread that waits for its exit."""

    def __init__(self, index: int, task: Task, slot: Slot, wake: threading.Event):
        self.index = index
        self.task = task
        self.slot = slot
        self.start = time.monotonic()
        self.code: Optional[int] = None
        self.proc, self._log_file = start_task(task, slot.env or None)
        # the waiting thread sets ``code`` then wakes the scheduler: no polling delay
        self._waiter = threading.Thread(target=self._wait, args=(wake,), daemon=True)
        self._waiter.start()

    def _wait(self, wake: threading.Event) -> None:
        code = self.proc.wait()
        self.code = code
        wake.set()

    def close(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.close()


class _Progress:
    """Steps of the running tasks. One task at a time, or no terminal: each task's own
    ``StepProgress`` (a bar, or a ``[i/n] step s/N`` line every LOG_EVERY_SECONDS). Several
    at once on a terminal: one bar of finished jobs, whose text lists each running job's
    step, with log lines printed above it."""

    def __init__(self, n_tasks: int, n_slots: int, tty: Optional[bool]):
        import sys
        self.n_tasks = n_tasks
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.combined = self.tty and n_slots > 1
        self.per_task: Dict[int, StepProgress] = {}
        self.bar = None
        self._redirect = None
        if self.combined:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm
            self.bar = tqdm(total=n_tasks, desc="jobs", unit="job", leave=False)
            self._redirect = logging_redirect_tqdm(loggers=[logging.root])
            self._redirect.__enter__()

    def label(self, index: int) -> str:
        return f"[{index + 1}/{self.n_tasks}]"

    def poll(self, running: Sequence[_Run]) -> None:
        if not self.combined:
            for run in running:
                if run.index not in self.per_task:
                    self.per_task[run.index] = StepProgress(run.task, self.label(run.index),
                                                            tty=self.tty)
                self.per_task[run.index]()
            return
        parts = []
        for run in sorted(running, key=lambda r: r.index):
            progress = run_dir.read_progress(run.task.output_dir) if run.task.output_dir \
                else None
            if progress and "step" in progress and "n_steps" in progress:
                parts.append(f"{self.label(run.index)} {progress['step']}/{progress['n_steps']}")
            else:
                parts.append(f"{self.label(run.index)} starting")
        self.bar.set_postfix_str(" | ".join(parts), refresh=True)

    def finished(self, run: _Run) -> None:
        progress = self.per_task.pop(run.index, None)
        if progress is not None:
            progress.close()
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        for progress in self.per_task.values():
            progress.close()
        self.per_task.clear()
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# starts task ``index`` in slot ``slot_index``: returns a run like ``_Run`` (index, task, slot,
# start, code, close, kill) whose ``code`` is set, then ``wake`` set, when it ends
Starter = Callable[[int, Task, int, threading.Event], Any]


def run_tasks(tasks: Sequence[Task], slots: Sequence[Slot], tty: Optional[bool] = None,
              starter: Optional[Starter] = None) -> List[int]:
    """Run every task in a free slot, in order, ``len(slots)`` at a time; returns the exit
    statuses in task order (negative: killed by that signal). Each task runs as a
    subprocess with its slot's environment, or as ``starter`` starts it.

    One line per finished task: ``[i/n] <slot label>: done|FAILED ... (seconds)``, ``i``
    being the task's position. A failing task does not stop the others. If this function is
    interrupted (Ctrl-C, any exception), every running child is killed before it raises.
    """
    if not slots:
        raise ValueError("run_tasks needs at least one slot")
    codes: List[Optional[int]] = [None] * len(tasks)
    pending: Deque[int] = deque(range(len(tasks)))
    free: Deque[int] = deque(range(len(slots)))
    running: Dict[int, _Run] = {}  # slot index -> its run
    wake = threading.Event()
    progress = _Progress(len(tasks), min(len(slots), len(tasks)), tty)
    try:
        while pending or running:
            while pending and free:
                s, i = free.popleft(), pending.popleft()
                running[s] = starter(i, tasks[i], s, wake) if starter \
                    else _Run(i, tasks[i], slots[s], wake)
            # wakes at once when a child exits, else after POLL_SECONDS to show progress
            wake.wait(timeout=_process.POLL_SECONDS)
            wake.clear()
            for s, run in list(running.items()):
                if run.code is None:
                    continue
                run.close()
                del running[s]
                free.append(s)
                codes[run.index] = run.code
                progress.finished(run)
                where = f"{run.slot.label}: " if run.slot.label else ""
                log.info("%s %s%s %s (%.1f s)", progress.label(run.index), where,
                         describe_exit(run.task, run.code), run.task,
                         time.monotonic() - run.start)
            progress.poll(list(running.values()))
    except BaseException:
        for run in running.values():
            run.kill()
        if running:
            log.warning("stopped: killed %d running jobs", len(running))
        raise
    finally:
        progress.close()
    return [c if c is not None else -1 for c in codes]
