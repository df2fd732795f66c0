"""Command launchers: ``REGISTRY`` maps a name to a launcher (one module per backend:
``local``, ``multi_gpu``, ``slurm``, ``dummy``), all built on ``core`` only.

``REGISTRY[name](jobs, **options)`` runs or submits jobs; see ``core.base.Launcher``.
``queued_job_ids()`` asks every registered launcher which submitted jobs its queue holds.
"""

from domainbed.command_launchers.core.base import (LAUNCHER_LOG, REGISTRY, Launcher, Task,
                                                   as_task, get_launcher, queued_job_ids,
                                                   register_launcher)
# backends register themselves on import
from domainbed.command_launchers import dummy, local, multi_gpu, slurm  # noqa: F401,E402

# upstream's names: each takes a list of command strings (or our jobs)
local_launcher = REGISTRY.get("local")
dummy_launcher = REGISTRY.get("dummy")
multi_gpu_launcher = REGISTRY.get("multi_gpu")

__all__ = ["LAUNCHER_LOG", "REGISTRY", "Launcher", "Task", "as_task", "dummy_launcher",
           "get_launcher", "local_launcher", "multi_gpu_launcher", "queued_job_ids",
           "register_launcher"]
