"""Command launchers: ``REGISTRY`` maps a name to a launcher (one module per backend).

``REGISTRY[name](jobs, **options)`` runs or submits jobs; see ``base.Launcher``.
"""

from domainbed.command_launchers.base import (LAUNCHER_LOG, REGISTRY, Launcher, Task, as_task,
                                               get_launcher, register_launcher)
# backends register themselves on import
from domainbed.command_launchers import dummy, local, multi_gpu, slurm  # noqa: F401,E402

__all__ = ["LAUNCHER_LOG", "REGISTRY", "Launcher", "Task", "as_task", "get_launcher",
           "register_launcher"]
