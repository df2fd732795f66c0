"""Submit jobs to SLURM through submitit: job arrays, requeue with resume, dependencies.

Each job runs ``TrainCommand``, a ``submitit.helpers.Checkpointable`` that starts the
training command as a child process. On preemption or time-out submitit calls its
``checkpoint``: the child is stopped (the training run resumes from its last checkpoint
file) and the same command is requeued.
"""

import contextlib
import getpass
import io
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Set

from domainbed.command_launchers.core.base import Launcher, Task, as_task, register_launcher
from domainbed.errors import DomainBedError
from domainbed.lib import run_dir
from domainbed.lib import options as opts

log = logging.getLogger(__name__)

try:  # submitit is a runtime dependency; the fallback keeps this module importable
    from submitit.helpers import Checkpointable
except ImportError:  # pragma: no cover
    Checkpointable = object  # type: ignore


class JobFailedError(DomainBedError):
    """A training command run by SLURM ended without finishing its run."""


class TrainCommand(Checkpointable):
    """Runs one command inside a SLURM job; checkpointing stops it and requeues it."""

    def __init__(self, command: Sequence[str], output_dir: Optional[str] = None,
                 stop_timeout_s: float = 60.0, signal_grace_s: float = 20.0):
        self.command = [str(a) for a in command]
        self.output_dir = output_dir
        self.stop_timeout_s = stop_timeout_s
        self.signal_grace_s = signal_grace_s
        self.starts: List[int] = []  # SLURM_RESTART_COUNT of every start
        self._proc: Optional[subprocess.Popen] = None

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_proc"] = None  # a live process handle cannot travel to the requeued job
        return state

    def __call__(self) -> Dict[str, Any]:
        """Run the command; returns ``{"returncode", "starts", "output_dir"}``.

        Raises JobFailedError when the command fails (so ``afterok`` dependants do not run).
        """
        self.starts.append(int(os.environ.get("SLURM_RESTART_COUNT", "0")))
        self._proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL)
        code = self._proc.wait()
        self._proc = None
        if code == 0 and self._finished():
            return {"returncode": 0, "starts": list(self.starts), "output_dir": self.output_dir}
        if code < 0 or code >= 128 or code == 0:
            # stopped by a signal: when SLURM preempts or times out the job, submitit's USR2
            # handler arrives meanwhile, checkpoints and requeues; otherwise this is a failure
            time.sleep(self.signal_grace_s)
        raise JobFailedError(self._failure_message(code))

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Stop the training child cleanly, then resubmit this same command."""
        self._stop_child()
        return super().checkpoint(*args, **kwargs)

    def _finished(self) -> bool:
        if self.output_dir is None:
            return True
        return os.path.exists(os.path.join(self.output_dir, run_dir.DONE))

    def _stop_child(self) -> None:
        # called from a signal handler while __call__ may be inside Popen.wait(): use
        # os.waitpid directly, Popen's own lock may be held by the interrupted frame
        proc = self._proc
        if proc is None:
            return
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + self.stop_timeout_s
        while time.monotonic() < deadline:
            try:
                pid, status = os.waitpid(proc.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return
            time.sleep(0.1)
        log.warning("training process %d ignored SIGTERM for %.0f s: killing it", proc.pid,
                    self.stop_timeout_s)
        try:
            os.kill(proc.pid, signal.SIGKILL)
            _, status = os.waitpid(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        except (ProcessLookupError, ChildProcessError):
            pass

    def _failure_message(self, code: int) -> str:
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        if self.output_dir is None:
            return f"command failed ({how}): {self.command}"
        failure = run_dir.read_failure(self.output_dir) or {}
        reason = failure.get("error") or "no failure recorded"
        return f"{self.output_dir} failed ({how}): {reason}"


# sbatch error text -> the option to fix and a hint
_SBATCH_ERRORS = [
    ("invalid partition", "--slurm_partition", "use a partition listed by `sinfo`"),
    ("invalid account", "--slurm_account", "use an account listed by `sacctmgr show assoc`"),
    ("more processors requested than permitted", "--slurm_cpus_per_task",
     "ask for at most the CPUs of one node (`sinfo -o %c`)"),
    ("invalid generic resource", "--slurm_gpus_per_node",
     "use 0 on a cluster without GPUs (`sinfo -o %G`)"),
    ("memory specification can not be satisfied", "--slurm_mem_gb",
     "ask for at most the memory of one node (`sinfo -o %m`, in MB)"),
    ("time limit", "--slurm_time", "stay within the partition's time limit (`sinfo -o %l`)"),
    ("dependency", "--slurm_dependency", "depend on job ids that exist (`squeue`, `sacct`)"),
    ("requested node configuration is not available",
     "--slurm_cpus_per_task / --slurm_mem_gb / --slurm_gpus_per_node",
     "no node has that many CPUs, that much memory or those GPUs (`sinfo -o '%c %m %G'`)"),
]


def explain_sbatch_error(text: str) -> str:
    """A one-line message naming the option to fix, from sbatch's error output."""
    lines = [l.strip() for l in str(text).splitlines() if l.strip()]
    errors = [l for l in lines if "error" in l.lower()] or lines or ["(no message)"]
    message = errors[-1]
    for prefix in ("sbatch: error: ", "Batch job submission failed: "):
        message = message[len(prefix):] if message.startswith(prefix) else message
    lowered = " ".join(errors).lower()
    for pattern, option, hint in _SBATCH_ERRORS:
        if pattern in lowered:
            return f"SLURM refused the jobs: {message} -> fix {option}: {hint}"
    return f"SLURM refused the jobs: {message} -> check the --slurm_* options"


@dataclass
class SlurmOptions:
    """The slurm launcher's command-line options (``launch_options`` maps them to
    ``submit``'s keywords)."""

    slurm_partition: Optional[str] = opts.option(None)
    slurm_account: Optional[str] = opts.option(None)
    slurm_time: int = opts.option(
        24 * 60, help="time limit of each job in minutes; a job that reaches it is requeued "
                      "and resumes from its checkpoint")
    slurm_gpus_per_node: int = opts.option(0)
    slurm_cpus_per_task: Optional[int] = opts.option(None)
    slurm_mem_gb: Optional[float] = opts.option(None)
    slurm_array_parallelism: int = opts.option(
        256, help="at most this many jobs of the array run at once")
    slurm_log_dir: Optional[str] = opts.option(
        None, help="where submitit writes per-job logs (default: <output_dir>/slurm_logs)")
    slurm_dependency: Optional[str] = opts.option(
        None, help="SLURM dependency of every job, e.g. afterok:123:124")
    slurm_wait: bool = opts.option(False, help="wait for the jobs to end and report each one")


@register_launcher("slurm", capabilities=("queue", "dependencies"))
class SlurmLauncher(Launcher):
    """Submits all jobs as one SLURM job array through submitit."""

    queue_name = "SLURM"
    options_class = SlurmOptions

    def launch_options(self, options: "SlurmOptions",
                       args: Any) -> Dict[str, Any]:
        """``submit``'s keywords; the logs go to ``<output_dir>/slurm_logs`` by default."""
        log_dir = options.slurm_log_dir
        if log_dir is None and getattr(args, "output_dir", None):
            log_dir = os.path.join(os.path.abspath(args.output_dir), "slurm_logs")
        return {"partition": options.slurm_partition, "account": options.slurm_account,
                "time_min": options.slurm_time, "gpus_per_node": options.slurm_gpus_per_node,
                "cpus_per_task": options.slurm_cpus_per_task, "mem_gb": options.slurm_mem_gb,
                "array_parallelism": options.slurm_array_parallelism, "log_dir": log_dir,
                "dependency": options.slurm_dependency, "wait": options.slurm_wait}

    def submit(self, jobs: Sequence[Any], log_dir: Optional[str] = None,
               partition: Optional[str] = None, account: Optional[str] = None,
               time_min: int = 24 * 60, gpus_per_node: int = 0,
               cpus_per_task: Optional[int] = None, mem_gb: Optional[float] = None,
               array_parallelism: int = 256, dependency: Optional[str] = None,
               after: Sequence[str] = (), job_name: str = "domainbed",
               additional_parameters: Optional[Dict[str, Any]] = None) -> list:
        """Submit ``jobs`` as one job array; returns the ``submitit.Job`` objects in order.

        ``after`` (job ids) adds ``afterok:<ids>``; ``dependency`` is a raw SLURM
        dependency string; both may be given. An impossible request raises DomainBedError
        naming the option to fix.
        """
        import submitit
        from submitit.core.utils import FailedJobError, FailedSubmissionError

        tasks = [as_task(j) for j in jobs]
        if not tasks:
            return []
        if shutil.which("sbatch") is None:
            raise DomainBedError("slurm launcher: `sbatch` is not on PATH; run on a SLURM login "
                                 "node, or choose --command_launcher local")
        for name, value in [("--slurm_time", time_min), ("--slurm_array_parallelism",
                                                         array_parallelism)]:
            if value is None or value < 1:
                raise DomainBedError(f"{name} must be a positive integer, got {value!r}")
        for name, value in [("--slurm_gpus_per_node", gpus_per_node),
                            ("--slurm_cpus_per_task", cpus_per_task), ("--slurm_mem_gb", mem_gb)]:
            if value is not None and value < 0:
                raise DomainBedError(f"{name} must be >= 0, got {value!r}")
        log_dir = log_dir or _default_log_dir(tasks)
        os.makedirs(log_dir, exist_ok=True)
        executor = submitit.AutoExecutor(folder=log_dir, cluster="slurm")
        extra = dict(additional_parameters or {})
        dependencies = [d for d in [dependency] if d]
        if after:
            dependencies.append("afterok:" + ":".join(str(a) for a in after))
        if dependencies:
            extra["dependency"] = ",".join(dependencies)
        params: Dict[str, Any] = {
            "timeout_min": int(time_min), "nodes": 1, "tasks_per_node": 1,
            "slurm_array_parallelism": int(array_parallelism), "name": job_name}
        if gpus_per_node:
            params["gpus_per_node"] = int(gpus_per_node)
        if cpus_per_task:
            params["cpus_per_task"] = int(cpus_per_task)
        if mem_gb:
            params["mem_gb"] = mem_gb
        if partition:
            params["slurm_partition"] = partition
        if account:
            params["slurm_account"] = account
        if extra:
            params["slurm_additional_parameters"] = extra
        executor.update_parameters(**params)
        sbatch_stderr = io.StringIO()  # submitit prints sbatch's errors; we explain them
        try:
            with contextlib.redirect_stderr(sbatch_stderr), executor.batch():
                submitted = [executor.submit(TrainCommand(t.command, t.output_dir))
                             for t in tasks]
        except (FailedJobError, FailedSubmissionError, subprocess.CalledProcessError) as exc:
            text = getattr(exc, "stderr", None) or sbatch_stderr.getvalue() or str(exc)
            raise DomainBedError(explain_sbatch_error(text)) from None
        if sbatch_stderr.getvalue().strip():
            log.warning("%s", sbatch_stderr.getvalue().strip())
        for task, job in zip(tasks, submitted):
            if task.output_dir:  # so that a relaunch does not submit it again while queued
                run_dir.write_submission(task.output_dir, job.job_id)
        log.info("submitted %d jobs to SLURM (array %s); logs in %s", len(submitted),
                 submitted[0].job_id.split("_")[0], log_dir)
        return submitted

    def launch(self, jobs: Sequence[Any], wait: bool = False, **options: Any) -> List[str]:
        """Submit ``jobs`` (options as in ``submit``); returns their SLURM job ids.

        With ``wait=True``, blocks until every job has ended and logs one line per job.
        """
        tasks = [as_task(j) for j in jobs]
        submitted = self.submit(tasks, **options)
        if wait:
            wait_for(submitted, tasks)
        return [j.job_id for j in submitted]

    def queued_job_ids(self) -> Optional[Set[str]]:
        """This user's jobs that SLURM still holds (``jobs_in_queue``)."""
        return jobs_in_queue()


def jobs_in_queue() -> Optional[Set[str]]:
    """Ids of this user's jobs that SLURM still holds (pending, running, requeued...), one
    per array task (``123_4``); None when ``squeue`` is missing or fails."""
    if shutil.which("squeue") is None:
        return None
    command = ["squeue", "--noheader", "--array", "--user", getpass.getuser(), "--format=%i"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("cannot read the SLURM queue (%s); queued jobs may be submitted again", exc)
        return None
    if result.returncode != 0:
        log.warning("cannot read the SLURM queue (squeue: %s); queued jobs may be submitted "
                    "again", " ".join(result.stderr.split()) or result.returncode)
        return None
    return {line.strip() for line in result.stdout.splitlines() if line.strip()}


def wait_for(submitted: Sequence[Any], tasks: Sequence[Task]) -> List[bool]:
    """Wait for submitit jobs; log one line each; True where the job succeeded."""
    from submitit.core.utils import UncompletedJobError

    ok = []
    for i, (job, task) in enumerate(zip(submitted, tasks)):
        try:
            job.result()
            ok.append(True)
            log.info("[%d/%d] done %s (SLURM job %s)", i + 1, len(tasks), task, job.job_id)
        except UncompletedJobError as exc:  # FailedJobError included
            ok.append(False)
            log.warning("[%d/%d] FAILED %s (SLURM job %s): %s; logs: %s", i + 1, len(tasks),
                        task, job.job_id, _one_line_reason(exc), job.paths.stderr)
    return ok


def _one_line_reason(exc: Exception) -> str:
    """The raised exception's line of a remote traceback, else the message's first line."""
    lines = [l.strip() for l in str(exc).splitlines() if l.strip()]
    raised = [l for l in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt|Exit)\b.*:", l)]
    if raised:
        return raised[-1]
    return lines[0] if lines else type(exc).__name__


def _default_log_dir(tasks: Sequence[Task]) -> str:
    dirs = [t.output_dir for t in tasks if t.output_dir]
    if dirs:
        parent = os.path.commonpath([os.path.dirname(os.path.abspath(d)) for d in dirs])
        return os.path.join(parent, "slurm_logs")
    return os.path.abspath("slurm_logs")
