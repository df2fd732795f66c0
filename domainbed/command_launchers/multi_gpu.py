"""Run jobs on the visible GPUs of this machine, one job per GPU at a time."""

import argparse
import logging
import os
import queue
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

from domainbed.command_launchers.base import Launcher, as_task, register_launcher
from domainbed.command_launchers.local import describe_exit, run_task
from domainbed.errors import DomainBedError

log = logging.getLogger(__name__)


def visible_gpus() -> List[str]:
    """The GPU ids jobs may use: ``CUDA_VISIBLE_DEVICES`` when set, else every CUDA device.

    As CUDA does, the list stops at the first negative id (``CUDA_VISIBLE_DEVICES=-1`` or
    an empty value hide every GPU).
    """
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        gpus = []
        for item in env.split(","):
            item = item.strip()
            if not item or item.startswith("-"):
                break
            gpus.append(item)
        return gpus
    import torch  # only here: listing GPUs is the one thing that needs it
    return [str(i) for i in range(torch.cuda.device_count())]


@register_launcher("multi_gpu")
class MultiGPULauncher(Launcher):
    """One worker per visible GPU; each job sees only its GPU through CUDA_VISIBLE_DEVICES."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("multi_gpu launcher")
        group.add_argument("--gpus", default=None,
                           help="comma-separated GPU ids to use (default: CUDA_VISIBLE_DEVICES, "
                                "else every GPU)")

    def options_from_args(self, args: argparse.Namespace) -> Dict[str, Any]:
        gpus = getattr(args, "gpus", None)
        return {"gpus": [g.strip() for g in gpus.split(",") if g.strip()]} if gpus else {}

    def launch(self, jobs: Sequence[Any], gpus: Optional[Sequence[str]] = None,
               **options: Any) -> List[int]:
        """Run every job; returns their exit statuses in job order.

        Raises DomainBedError at once when no GPU is visible.
        """
        tasks = [as_task(j) for j in jobs]
        gpus = list(gpus) if gpus else visible_gpus()
        if not gpus:
            raise DomainBedError(
                "multi_gpu launcher: no GPU is visible (CUDA_VISIBLE_DEVICES="
                f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}); use --command_launcher local on "
                "a CPU machine, or make GPUs visible")
        todo: "queue.Queue[int]" = queue.Queue()
        for i in range(len(tasks)):
            todo.put(i)
        codes: List[Optional[int]] = [None] * len(tasks)
        lock = threading.Lock()
        finished = [0]

        def worker(gpu: str) -> None:
            while True:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                start = time.monotonic()
                code = run_task(tasks[i], {"CUDA_VISIBLE_DEVICES": gpu})
                with lock:
                    codes[i] = code
                    finished[0] += 1
                    log.info("[%d/%d] GPU %s: %s %s (%.1f s)", finished[0], len(tasks), gpu,
                             describe_exit(tasks[i], code), tasks[i], time.monotonic() - start)

        threads = [threading.Thread(target=worker, args=(g,), daemon=True) for g in gpus]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [c if c is not None else -1 for c in codes]
