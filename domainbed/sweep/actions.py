"""What ``sweep`` does with its job list: launch, delete_incomplete, status."""

import logging
import os
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from domainbed.lib import run_dir
from domainbed.sweep.jobs import Job

log = logging.getLogger(__name__)

STATES = (run_dir.DONE_STATE, run_dir.INCOMPLETE_STATE, run_dir.RUNNING_STATE,
          run_dir.QUEUED_STATE, run_dir.FAILED_STATE, run_dir.NOT_LAUNCHED_STATE)
LAUNCHABLE = (run_dir.NOT_LAUNCHED_STATE, run_dir.INCOMPLETE_STATE, run_dir.FAILED_STATE)
DELETABLE = (run_dir.INCOMPLETE_STATE, run_dir.FAILED_STATE)


def ask_yes_no(prompt: str) -> bool:
    """Ask on the terminal; anything but y/yes (or no terminal) means no."""
    try:
        return input(prompt + " [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def queued_dirs(jobs: Sequence[Job],
                in_queue: Optional[Callable[[], Optional[Set[str]]]] = None) -> Set[str]:
    """Output dirs of the jobs that were submitted to a queue (``slurm_job`` file), have not
    started (Incomplete, Failed) and whose job id the queue still holds: launching them again
    would submit them twice. ``in_queue`` (default: the launchers' ``queued_job_ids``, i.e.
    ``squeue`` for SLURM) returns the held job ids, None when no queue can be read."""
    submitted = {}
    for job in jobs:
        job_id = run_dir.read_submission(job.output_dir)
        if job_id and job.state in (run_dir.INCOMPLETE_STATE, run_dir.FAILED_STATE):
            submitted[job.output_dir] = job_id
    if not submitted:
        return set()
    if in_queue is None:
        from domainbed.command_launchers import queued_job_ids as in_queue
    held = in_queue()
    if held is None:
        return set()
    return {d for d, job_id in submitted.items() if job_id in held}


def group_by_state(jobs: Sequence[Job],
                   queued: Set[str] = frozenset()) -> "OrderedDict[str, List[Job]]":
    """Jobs per state, every state present (possibly empty), in ``STATES`` order; the
    jobs whose output dir is in ``queued`` (see ``queued_dirs``) are Queued."""
    groups: "OrderedDict[str, List[Job]]" = OrderedDict((s, []) for s in STATES)
    for job in jobs:
        groups[run_dir.QUEUED_STATE if job.output_dir in queued else job.state].append(job)
    return groups


def _in_states(jobs: Sequence[Job], groups: Dict[str, List[Job]],
               states: Sequence[str]) -> List[Job]:
    """The jobs grouped under one of ``states``, in the sweep's order."""
    wanted = {id(j) for state in states for j in groups[state]}
    return [j for j in jobs if id(j) in wanted]


def format_counts(groups: Dict[str, List[Job]]) -> str:
    total = sum(len(v) for v in groups.values())
    return f"{total} jobs: " + ", ".join(f"{len(v)} {k.lower()}" for k, v in groups.items())


def failures(jobs: Sequence[Job]) -> List[Tuple[Job, str, str]]:
    """For each Failed job: (job, one-line reason, where its traceback is)."""
    out = []
    for job in jobs:
        if job.state != run_dir.FAILED_STATE:
            continue
        failure = run_dir.read_failure(job.output_dir) or {}
        reason = " ".join(str(failure.get("error") or "no reason recorded").split())
        where = os.path.join(job.output_dir, run_dir.FAILED)
        if not failure.get("traceback"):
            where = os.path.join(job.output_dir, str(failure.get("log") or run_dir.ERR))
        out.append((job, reason, where))
    return out


def status(jobs: Sequence[Job], in_queue=None) -> str:
    """A report: counts per state, then one line per Failed job with its reason."""
    groups = group_by_state(jobs, queued_dirs(jobs, in_queue))
    lines = [format_counts(groups)]
    for job, reason, where in failures(groups[run_dir.FAILED_STATE]):
        lines.append(f"Failed {job.name}: {reason} (traceback: {where})")
    for job in groups[run_dir.RUNNING_STATE]:
        lines.append(f"Running {job.name}: {job.output_dir}")
    lines += divergence_lines(groups[run_dir.DONE_STATE])
    return "\n".join(lines)


def divergences(jobs: Sequence[Job]) -> List[Tuple[Job, dict]]:
    """The Done jobs whose run diverged (a non-finite loss), with their ``diverged`` marker."""
    found = []
    for job in jobs:
        marker = run_dir.read_divergence(job.output_dir)
        if marker is not None:
            found.append((job, marker))
    return found


def divergence_lines(done_jobs: Sequence[Job]) -> List[str]:
    """One line per diverged run (they count as done, with their collapsed scores)."""
    lines = []
    for job, marker in divergences(done_jobs):
        values = ", ".join(f"{k}={v}" for k, v in sorted((marker.get("nonfinite") or {}).items()))
        lines.append(f"Diverged {job.name}: non-finite {values or 'loss'} at step "
                     f"{marker.get('step')}; done, its last record scores the diverged model "
                     f"({job.output_dir})")
    return lines


def summary(jobs: Sequence[Job]) -> Tuple[List[str], bool]:
    """The end of a launch: counts per state of ``jobs`` (the launched ones), one line per
    failed or unfinished job with its id and the last line of its error, one per diverged
    run; and whether every job is done."""
    groups = group_by_state(jobs)
    lines = ["sweep summary: " + format_counts(groups)]
    for job, reason, where in failures(groups[run_dir.FAILED_STATE]):
        lines.append(f"  failed {job.name}: {reason} (see {where})")
    for job in groups[run_dir.INCOMPLETE_STATE] + groups[run_dir.NOT_LAUNCHED_STATE]:
        lines.append(f"  unfinished {job.name}: {job.output_dir}")
    lines += ["  " + line[0].lower() + line[1:] for line in
              divergence_lines(groups[run_dir.DONE_STATE])]
    ok = len(groups[run_dir.DONE_STATE]) == len(jobs)
    return lines, ok


def launchable(jobs: Sequence[Job], in_queue=None) -> List[Job]:
    """The jobs that are not Done, Running or Queued (the states counted in the log)."""
    groups = group_by_state(jobs, queued_dirs(jobs, in_queue))
    log.info(format_counts(groups))
    if groups[run_dir.RUNNING_STATE]:
        log.warning("not launching %d running jobs (a process holds their lock)",
                    len(groups[run_dir.RUNNING_STATE]))
    if groups[run_dir.QUEUED_STATE]:
        log.warning("not launching %d jobs still in the SLURM queue (their recorded job ids "
                    "are pending or running; scancel them to launch again)",
                    len(groups[run_dir.QUEUED_STATE]))
    return _in_states(jobs, groups, LAUNCHABLE)


def launch(jobs: Sequence[Job], launcher: Callable[..., Any], skip_confirmation: bool = False,
           confirm: Callable[[str], bool] = ask_yes_no,
           before_launch: Sequence[Callable[[List[Job]], None]] = (),
           in_queue=None, **launcher_options: Any) -> Optional[List[Job]]:
    """Launch the jobs that are not Done, Running or Queued; returns them (None if declined).

    Incomplete and Failed jobs get the same command again, which resumes them from their
    checkpoint. ``before_launch`` functions get the job list once, after confirmation.
    """
    to_launch = launchable(jobs, in_queue)
    if not to_launch:
        log.info("nothing to launch")
        return []
    name = getattr(launcher, "name", None) or getattr(launcher, "__name__", "launcher")
    if not skip_confirmation and not confirm(f"About to launch {len(to_launch)} jobs with "
                                             f"{name}. Continue?"):
        log.info("nothing launched")
        return None
    for hook in before_launch:
        hook(to_launch)
    log.info("launching %d jobs with %s", len(to_launch), name)
    launcher(to_launch, **launcher_options)
    return to_launch


def delete_incomplete(jobs: Sequence[Job], skip_confirmation: bool = False,
                      confirm: Callable[[str], bool] = ask_yes_no,
                      in_queue=None) -> Optional[List[Job]]:
    """Delete the directories of Incomplete and Failed jobs; returns the deleted jobs.

    A job is deleted only while this process holds its run lock, so a running job (or
    one that starts meanwhile) is never deleted; nor is one still in the SLURM queue.
    """
    groups = group_by_state(jobs, queued_dirs(jobs, in_queue))
    candidates = _in_states(jobs, groups, DELETABLE)
    if groups[run_dir.QUEUED_STATE]:
        log.warning("kept %d jobs still in the SLURM queue", len(groups[run_dir.QUEUED_STATE]))
    log.info("%d incomplete or failed jobs to delete", len(candidates))
    if not candidates:
        return []
    if not skip_confirmation and not confirm(f"About to delete {len(candidates)} job "
                                             "directories. Continue?"):
        log.info("nothing deleted")
        return None
    deleted = []
    for job in candidates:
        lock = run_dir.RunLock(job.output_dir)
        if not lock.acquire():
            log.warning("kept %s: it started running", job.name)
            continue
        try:
            if os.path.exists(os.path.join(job.output_dir, run_dir.DONE)):
                continue  # it finished between the listing and now
            run_dir.delete_locked(job.output_dir)  # never deletes the lock it holds in place
            deleted.append(job)
        finally:
            lock.release()
    log.info("deleted %d job directories", len(deleted))
    return deleted
