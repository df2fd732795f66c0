"""Run jobs on the visible GPUs of this machine, ``jobs_per_gpu`` jobs per GPU at a time."""

import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from domainbed.command_launchers.core.base import Launcher, as_task, register_launcher
from domainbed.command_launchers.core.failures import record_failures
from domainbed.command_launchers.core.process import thread_overrides
from domainbed.command_launchers.core.parallel import Slot, run_tasks
# visible_gpus lives with the other machine facts; this module's name for it is kept
from domainbed.command_launchers.core.resources import visible_gpus
from domainbed.errors import DomainBedError
from domainbed.lib.options import option

log = logging.getLogger(__name__)


def gpu_slots(gpus: Sequence[str], jobs_per_gpu: int = 1,
              threads: Optional[Dict[str, str]] = None) -> List[Slot]:
    """``jobs_per_gpu`` slots per GPU, ordered so that the first jobs go one per GPU before
    any GPU gets a second one; each slot sees only its GPU (``CUDA_VISIBLE_DEVICES``)."""
    return [Slot(dict(threads or {}, CUDA_VISIBLE_DEVICES=gpu), f"GPU {gpu}")
            for _ in range(jobs_per_gpu) for gpu in gpus]


@dataclass
class MultiGPUOptions:
    """The multi_gpu launcher's command-line options (``--threads_per_job`` is the local
    launcher's, read by this one too)."""

    gpus: Optional[str] = option(None, help="comma-separated GPU ids to use (default: "
                                            "CUDA_VISIBLE_DEVICES, else every GPU)")
    jobs_per_gpu: Optional[int] = option(
        None, metavar="K",
        help="runs packed on each GPU at once (default 1); small models leave a GPU mostly "
             "idle, several runs fill it")


@register_launcher("multi_gpu")
class MultiGPULauncher(Launcher):
    """``jobs_per_gpu`` workers per visible GPU; each job sees only its GPU through
    CUDA_VISIBLE_DEVICES, and the CPU cores are split between the jobs that run at once."""

    options_class = MultiGPUOptions

    def launch_options(self, options: "MultiGPUOptions",
                       args: Any) -> Dict[str, Any]:
        """``gpus`` as a list of ids; ``threads_per_job`` is the local launcher's option."""
        result: Dict[str, Any] = {}
        if options.gpus:
            result["gpus"] = [g.strip() for g in options.gpus.split(",") if g.strip()]
        if options.jobs_per_gpu is not None:
            result["jobs_per_gpu"] = options.jobs_per_gpu
        if getattr(args, "threads_per_job", None) is not None:
            result["threads_per_job"] = args.threads_per_job
        return result

    def launch(self, jobs: Sequence[Any], gpus: Optional[Sequence[str]] = None,
               jobs_per_gpu: int = 1, threads_per_job: Optional[int] = None,
               tty: Optional[bool] = None, **options: Any) -> List[int]:
        """Run every job; returns their exit statuses in job order.

        Raises DomainBedError at once when no GPU is visible, or for ``jobs_per_gpu`` < 1.
        """
        tasks = [as_task(j) for j in jobs]
        if not isinstance(jobs_per_gpu, int) or jobs_per_gpu < 1:
            raise DomainBedError(f"--jobs_per_gpu must be a positive integer, got "
                                 f"{jobs_per_gpu!r}; 1 runs one job per GPU")
        gpus = list(gpus) if gpus else visible_gpus()
        if not gpus:
            raise DomainBedError(
                "multi_gpu launcher: no GPU is visible (CUDA_VISIBLE_DEVICES="
                f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}); use --command_launcher local on "
                "a CPU machine, or make GPUs visible")
        n_parallel = max(1, min(len(gpus) * jobs_per_gpu, len(tasks)))
        slots = gpu_slots(gpus, jobs_per_gpu, thread_overrides(n_parallel, threads_per_job))
        log.info("multi_gpu launcher: %d GPUs x %d jobs each", len(gpus), jobs_per_gpu)
        codes = run_tasks(tasks, slots, tty=tty)
        record_failures(tasks, codes)  # the reason of a job that could not write it
        n_failed = sum(1 for c in codes if c != 0)
        if n_failed:
            log.warning("multi_gpu launcher: %d of %d jobs failed", n_failed, len(tasks))
        return codes
