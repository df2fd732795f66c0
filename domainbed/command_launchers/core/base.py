"""The one launcher interface, and the registry every backend joins by decorator.

A launcher runs (or submits) a list of jobs. It accepts, for each job, a sweep ``Job``
(anything with a ``command`` list, an ``output_dir`` and, optionally, a typed ``call``), an
argument list, or a command string (split with ``shlex``, never given to a shell), so
upstream code that calls ``REGISTRY[name](commands)`` keeps working; a command is only ever
run as a subprocess, a call may run in the launcher's process.
"""

import dataclasses
import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Set, Type

from domainbed.errors import DomainBedError
from domainbed.lib.options import option_defaults
from domainbed.lib.options import from_namespace as options_from_namespace
from domainbed.registry import Registry

# capabilities a backend declares where it registers (``register_launcher``):
# "lists_only": it only lists the jobs (the sweep prepares and writes nothing);
# "queue": it queues jobs and returns before they end (unless told to ``wait``), and answers
# ``queued_job_ids`` (jobs submitted but not started);
# "dependencies": ``submit(jobs, after=ids)`` queues jobs that start once earlier ones
# succeeded, so it runs a multi-stage plan by submitting every stage at once
CAPABILITIES = ("lists_only", "queue", "dependencies")

REGISTRY: Registry = Registry("command launcher", decorator="register_launcher",
                              search=["domainbed.command_launchers"],
                              fields={"capabilities": ()}, extensible=True,
                              listed_as="launchers")

# file, inside a job's directory, that receives the stdout/stderr of local runs
LAUNCHER_LOG = "launcher.log"


@dataclass
class Task:
    """What a launcher needs to run one job: its ``command`` (the job rendered as a command
    line, what subprocess and SLURM backends run) and, when the job is a call of our own
    code, ``call``: a picklable function without arguments that returns the exit status
    (e.g. ``domainbed.training.job.training_call(config)``), which a backend may run in its
    own process or a worker instead of the command."""

    command: List[str]
    output_dir: Optional[str] = None
    name: str = ""
    call: Optional[Callable[[], int]] = None

    def __str__(self) -> str:
        return self.name or shlex.join(self.command)


def as_task(job: Any) -> Task:
    """A ``Task`` from a sweep job, an argument list or a command string."""
    if isinstance(job, Task):
        return job
    if isinstance(job, str):
        return Task(shlex.split(job))
    if isinstance(job, (list, tuple)):
        return Task([str(a) for a in job])
    command = getattr(job, "command", None)
    if command is None:
        raise TypeError(f"cannot launch {job!r}: expected a Job, an argument list or a string")
    return Task([str(a) for a in command], getattr(job, "output_dir", None),
                getattr(job, "name", "") or "", getattr(job, "call", None))


class Launcher(ABC):
    """Runs or submits jobs. Subclasses set ``name`` and implement ``launch``."""

    name: str = ""
    capabilities: frozenset = frozenset()  # set by ``register_launcher``

    @property
    def dry_run(self) -> bool:
        """Whether it only lists the jobs (the sweep prepares and writes nothing)."""
        return "lists_only" in self.capabilities

    # a dataclass of ``domainbed.lib.options.option`` fields: this backend's command-line
    # options (named with the backend's name), from which the command lines generate its
    # flags (``domainbed.scripts.cli.add_launcher_arguments``) and ``option_defaults`` and
    # ``options_from_args`` read; None: no options
    options_class: ClassVar[Optional[type]] = None

    def option_defaults(self) -> Dict[str, Any]:
        """The defaults of this backend's command-line options (no parser needed)."""
        return option_defaults(self.options_class) if self.options_class is not None else {}

    def options_from_args(self, args: Any) -> Dict[str, Any]:
        """The keyword options of ``launch`` taken from parsed command-line values (an
        object with one attribute per option, e.g. a parsed namespace; an option it lacks
        takes its default)."""
        if self.options_class is None:
            return {}
        return self.launch_options(options_from_namespace(self.options_class, args), args)

    def launch_options(self, options: Any, args: Any) -> Dict[str, Any]:
        """The keyword options of ``launch`` of this backend's parsed ``options`` (an
        ``options_class``; ``args``: every value of the command line): by default the
        options that are not None, by field name."""
        return {k: v for k, v in dataclasses.asdict(options).items() if v is not None}

    @abstractmethod
    def launch(self, jobs: Sequence[Any], **options: Any) -> List[Any]:
        """Run or submit ``jobs``; one entry per job in the result (backend-specific)."""

    def submit(self, jobs: Sequence[Any], after: Sequence[str] = (), job_name: str = "",
               **options: Any) -> List[Any]:
        """Queue ``jobs`` to start once the jobs ``after`` (ids) succeeded; returns one
        handle per job, with its queue id as ``job_id``. Only backends with the
        ``dependencies`` capability implement it; they run a multi-stage plan by submitting
        every stage at once (``domainbed.sweep.plan.submit``), and their ``launch`` takes
        ``wait=True`` (return once the jobs ended), which a plan's stage job uses."""
        raise NotImplementedError(f"the {self.name} launcher does not queue jobs with "
                                  "dependencies")

    def waits(self, options: Dict[str, Any]) -> bool:
        """Whether ``launch(jobs, **options)`` returns only once the jobs ended (not when it
        only lists them, or queues them without ``wait``)."""
        if self.dry_run:
            return False
        return "queue" not in self.capabilities or bool(options.get("wait"))

    # how the queue's jobs are called in messages (e.g. "SLURM"); default: the name
    queue_name: str = ""

    def queued_job_ids(self) -> Optional[Set[str]]:
        """Ids of the jobs this backend's queue still holds (the ids recorded with
        ``run_dir.write_submission``); None: this backend has no queue, or cannot read it."""
        return None

    def __call__(self, jobs: Sequence[Any], **options: Any) -> List[Any]:
        return self.launch(jobs, **options)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def register_launcher(name: str, capabilities: Sequence[str] = ()
                      ) -> Callable[[Type[Launcher]], Type[Launcher]]:
    """Class decorator: register one instance of the launcher class under ``name``, with
    its ``capabilities`` (see ``CAPABILITIES``)."""
    unknown = [c for c in capabilities if c not in CAPABILITIES]
    if unknown:
        raise ValueError(f"launcher {name!r}: unknown capability {unknown[0]!r}; known: "
                         f"{', '.join(CAPABILITIES)}")

    def decorator(cls: Type[Launcher]) -> Type[Launcher]:
        cls.name = name
        cls.capabilities = frozenset(capabilities)
        REGISTRY.register(name, capabilities=capabilities)(cls())
        return cls
    return decorator


def queued_job_ids() -> Optional[Set[str]]:
    """The union of the queued job ids of the launchers registered so far (plugins are not
    loaded here); None when none of them has a queue it can read."""
    held = []
    for name in REGISTRY.names():
        ask = getattr(REGISTRY.get(name), "queued_job_ids", None)  # upstream-style functions
        ids = ask() if callable(ask) else None
        if ids is not None:
            held.append(ids)
    return set().union(*held) if held else None


def get_launcher(name: str) -> Launcher:
    """The launcher registered as ``name``; an unknown name lists the known ones."""
    from domainbed.plugins import load_plugins
    load_plugins()  # extensions may add backends
    if name not in REGISTRY:
        raise DomainBedError(
            f"unknown command launcher {name!r}; choose --command_launcher from: "
            f"{', '.join(REGISTRY.names())}")
    return REGISTRY.get(name)
