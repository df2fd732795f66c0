"""Run jobs one after the other as subprocesses of this process, showing each job's steps."""

import logging
import os
import subprocess
import sys
import time
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional, Sequence

from domainbed.command_launchers.base import (LAUNCHER_LOG, Launcher, Task, as_task,
                                               register_launcher)
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


def run_task(task: Task, env_overrides: Optional[Dict[str, str]] = None,
             on_poll: Optional[Callable[[], None]] = None) -> int:
    """Run one task to completion and return its exit status (negative: killed by a signal).

    The child's stdout and stderr are appended to ``<output_dir>/launcher.log`` when the
    task has an output directory (the training run writes its own out.txt / err.txt too).
    ``on_poll`` is called about twice a second while the task runs.
    """
    env = None
    if env_overrides:
        env = dict(os.environ)
        env.update(env_overrides)
    if not task.output_dir:
        return _wait(subprocess.Popen(task.command, env=env, stdin=subprocess.DEVNULL), on_poll)
    os.makedirs(task.output_dir, exist_ok=True)
    with open(os.path.join(task.output_dir, LAUNCHER_LOG), "ab") as out:
        header = f"=== {datetime.now().isoformat(timespec='seconds')} {task.command}"
        if env_overrides:
            header += f" env={env_overrides}"
        out.write((header + "\n").encode())
        out.flush()
        return _wait(subprocess.Popen(task.command, env=env, stdin=subprocess.DEVNULL,
                                      stdout=out, stderr=subprocess.STDOUT), on_poll)


class StepProgress:
    """Shows the steps of the running job from its ``progress.json``: a tqdm bar on a
    terminal, else a log line at most every LOG_EVERY_SECONDS."""

    def __init__(self, task: Task, label: str, tty: Optional[bool] = None):
        self.task = task
        self.label = label
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.bar = None
        self._last_log = time.monotonic()

    def __call__(self) -> None:
        progress = run_dir.read_progress(self.task.output_dir) if self.task.output_dir else None
        if not progress or "step" not in progress or "n_steps" not in progress:
            return
        step, total = int(progress["step"]), int(progress["n_steps"])
        if self.tty:
            if self.bar is None:
                from tqdm import tqdm
                self.bar = tqdm(total=total, desc=self.label, unit="step", leave=False)
            self.bar.n = step
            self.bar.refresh()
        elif time.monotonic() - self._last_log >= LOG_EVERY_SECONDS:
            self._last_log = time.monotonic()
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
    """Sequential subprocesses; a failing job is reported and the next one starts."""

    def launch(self, jobs: Sequence[Any], **options: Any) -> List[int]:
        """Run every job in order; returns their exit statuses."""
        tasks = [as_task(j) for j in jobs]
        codes = []
        for i, task in enumerate(tasks):
            start = time.monotonic()
            progress = StepProgress(task, f"[{i + 1}/{len(tasks)}]")
            try:
                code = run_task(task, on_poll=progress)
            finally:
                progress.close()
            codes.append(code)
            log.info("[%d/%d] %s %s (%.1f s)", i + 1, len(tasks), describe_exit(task, code),
                     task, time.monotonic() - start)
        n_failed = sum(1 for c in codes if c != 0)
        if n_failed:
            log.warning("local launcher: %d of %d jobs failed", n_failed, len(tasks))
        return codes
