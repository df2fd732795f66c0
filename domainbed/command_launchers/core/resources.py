"""What the machine offers to concurrent runs: CPU cores, visible GPUs, and how to split them.

Local runs of this project are small (tiny CNNs, 32x32 images, a few hundred steps): a run
barely uses a second thread, so several one-thread runs finish a sweep sooner than one run
with every core, as long as each run has a core of its own (measured in docs/sweeps.md).
"""

import os
from typing import Dict, List, Optional, Sequence

# thread-count variables that the math libraries read when a process starts
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

# CPU-only machines with at most this many cores run one job at a time by default: on the
# 2-core machine this was measured on, a second concurrent job did not pay (docs/sweeps.md)
SMALL_MACHINE_CORES = 4
# above that, each concurrent job gets at least this many cores by default
CORES_PER_CPU_JOB = 4


def cpu_count() -> int:
    """The cores this process may run on (its affinity mask, as a container or taskset
    restricts it), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


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


def default_max_parallel(n_cpus: Optional[int] = None,
                         gpus: Optional[Sequence[str]] = None) -> int:
    """How many local jobs run at once by default: one per visible GPU; on a CPU-only
    machine 1 up to SMALL_MACHINE_CORES cores, else one per CORES_PER_CPU_JOB cores."""
    n_cpus = cpu_count() if n_cpus is None else n_cpus
    gpus = visible_gpus() if gpus is None else gpus
    if gpus:
        return len(gpus)
    if n_cpus <= SMALL_MACHINE_CORES:
        return 1
    return max(1, n_cpus // CORES_PER_CPU_JOB)


def threads_per_job(n_parallel: int, n_cpus: Optional[int] = None) -> int:
    """The cores split evenly between ``n_parallel`` concurrent jobs (at least 1 each)."""
    n_cpus = cpu_count() if n_cpus is None else n_cpus
    return max(1, n_cpus // max(1, n_parallel))


def thread_env(n_threads: int) -> Dict[str, str]:
    """Environment overrides that give a child process ``n_threads`` math threads."""
    return {name: str(int(n_threads)) for name in THREAD_ENV_VARS}
