"""A job that ended badly without saying why in its run directory gets a ``failed`` file.

A training run writes its own ``failed`` (error and traceback) when it raises; one refused
before it started (bad input: nothing written) or killed by a signal does not. The launcher
then writes it, with the last line the job printed (``launcher.log``), so that ``sweep
status`` and the end-of-sweep summary name the reason of every failed job.
"""

import json
import os
from typing import Optional, Sequence

from domainbed.command_launchers.core.base import LAUNCHER_LOG, Task
from domainbed.lib import run_dir

HEADER = "=== "  # launcher.log: the line each attempt starts with


def last_log_line(output_dir: str) -> Optional[str]:
    """The last non-empty line the latest attempt wrote to ``launcher.log``."""
    try:
        with open(os.path.join(output_dir, LAUNCHER_LOG), "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        if line.startswith(HEADER):
            return None
        if line.strip():
            return line.strip()
    return None


def record_failure(task: Task, returncode: int) -> None:
    """Write ``failed`` for a job that exited non-zero and left neither ``done`` nor its
    own ``failed``."""
    out = task.output_dir
    if returncode == 0 or not out or not os.path.isdir(out):
        return
    if any(os.path.exists(os.path.join(out, name)) for name in (run_dir.DONE, run_dir.FAILED)):
        return
    how = f"killed by signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
    line = last_log_line(out)
    error = f"{line} ({how})" if line else how
    from domainbed.lib.atomic import atomic_write_text
    try:
        atomic_write_text(os.path.join(out, run_dir.FAILED), json.dumps(
            {"error": error, "traceback": "", "log": LAUNCHER_LOG}, indent=2))
    except OSError:
        pass  # a full disk: the launcher's own log line still says the job failed


def record_failures(tasks: Sequence[Task], codes: Sequence[int]) -> None:
    for task, code in zip(tasks, codes):
        record_failure(task, code)
