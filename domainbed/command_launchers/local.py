"""Run jobs one after the other as subprocesses of this process."""

import logging
import os
import subprocess
import time
from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence

from domainbed.command_launchers.base import (LAUNCHER_LOG, Launcher, Task, as_task,
                                               register_launcher)

log = logging.getLogger(__name__)


def run_task(task: Task, env_overrides: Optional[Dict[str, str]] = None) -> int:
    """Run one task to completion and return its exit status (negative: killed by a signal).

    The child's stdout and stderr are appended to ``<output_dir>/launcher.log`` when the
    task has an output directory (the training run writes its own out.txt / err.txt too).
    """
    env = None
    if env_overrides:
        env = dict(os.environ)
        env.update(env_overrides)
    if not task.output_dir:
        return subprocess.call(task.command, env=env, stdin=subprocess.DEVNULL)
    os.makedirs(task.output_dir, exist_ok=True)
    with open(os.path.join(task.output_dir, LAUNCHER_LOG), "ab") as out:
        header = f"=== {datetime.now().isoformat(timespec='seconds')} {task.command}"
        if env_overrides:
            header += f" env={env_overrides}"
        out.write((header + "\n").encode())
        out.flush()
        return subprocess.call(task.command, env=env, stdin=subprocess.DEVNULL,
                               stdout=out, stderr=subprocess.STDOUT)


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
            code = run_task(task)
            codes.append(code)
            log.info("[%d/%d] %s %s (%.1f s)", i + 1, len(tasks), describe_exit(task, code),
                     task, time.monotonic() - start)
        n_failed = sum(1 for c in codes if c != 0)
        if n_failed:
            log.warning("local launcher: %d of %d jobs failed", n_failed, len(tasks))
        return codes
