"""Print the commands and run nothing (to check a sweep before launching it)."""

import shlex
import sys
from typing import Any, List, Optional, Sequence, TextIO

from domainbed.command_launchers.core.base import Launcher, as_task, register_launcher


@register_launcher("dummy", capabilities=("lists_only",))
class DummyLauncher(Launcher):
    """Writes one shell-quoted command line per job; creates no file and starts nothing."""

    def launch(self, jobs: Sequence[Any], stream: Optional[TextIO] = None,
               **options: Any) -> List[None]:
        stream = stream or sys.stdout
        tasks = [as_task(j) for j in jobs]
        for task in tasks:
            print(f"Dummy launcher: {shlex.join(task.command)}", file=stream)
        return [None] * len(tasks)
