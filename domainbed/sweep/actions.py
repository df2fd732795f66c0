"""What ``sweep`` does with its job list: launch, delete_incomplete, status."""

import logging
import os
import shutil
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from domainbed.lib import run_dir
from domainbed.sweep.jobs import Job

log = logging.getLogger(__name__)

STATES = (run_dir.DONE_STATE, run_dir.INCOMPLETE_STATE, run_dir.RUNNING_STATE,
          run_dir.FAILED_STATE, run_dir.NOT_LAUNCHED_STATE)
LAUNCHABLE = (run_dir.NOT_LAUNCHED_STATE, run_dir.INCOMPLETE_STATE, run_dir.FAILED_STATE)
DELETABLE = (run_dir.INCOMPLETE_STATE, run_dir.FAILED_STATE)


def ask_yes_no(prompt: str) -> bool:
    """Ask on the terminal; anything but y/yes (or no terminal) means no."""
    try:
        return input(prompt + " [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def group_by_state(jobs: Sequence[Job]) -> "OrderedDict[str, List[Job]]":
    """Jobs per state, every state present (possibly empty), in ``STATES`` order."""
    groups: "OrderedDict[str, List[Job]]" = OrderedDict((s, []) for s in STATES)
    for job in jobs:
        groups[job.state].append(job)
    return groups


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
            where = os.path.join(job.output_dir, run_dir.ERR)
        out.append((job, reason, where))
    return out


def status(jobs: Sequence[Job]) -> str:
    """A report: counts per state, then one line per Failed job with its reason."""
    groups = group_by_state(jobs)
    lines = [format_counts(groups)]
    for job, reason, where in failures(groups[run_dir.FAILED_STATE]):
        lines.append(f"Failed {job.name}: {reason} (traceback: {where})")
    for job in groups[run_dir.RUNNING_STATE]:
        lines.append(f"Running {job.name}: {job.output_dir}")
    return "\n".join(lines)


def launch(jobs: Sequence[Job], launcher: Callable[..., Any], skip_confirmation: bool = False,
           confirm: Callable[[str], bool] = ask_yes_no,
           before_launch: Sequence[Callable[[List[Job]], None]] = (),
           **launcher_options: Any) -> Optional[List[Job]]:
    """Launch the jobs that are not Done and not Running; returns them (None if declined).

    Incomplete and Failed jobs get the same command again, which resumes them from their
    checkpoint. ``before_launch`` functions get the job list once, after confirmation.
    """
    groups = group_by_state(jobs)
    log.info(format_counts(groups))
    if groups[run_dir.RUNNING_STATE]:
        log.warning("not launching %d running jobs (a process holds their lock)",
                    len(groups[run_dir.RUNNING_STATE]))
    to_launch = [j for j in jobs if j.state in LAUNCHABLE]
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
                      confirm: Callable[[str], bool] = ask_yes_no) -> Optional[List[Job]]:
    """Delete the directories of Incomplete and Failed jobs; returns the deleted jobs.

    A job is deleted only while this process holds its run lock, so a running job (or
    one that starts meanwhile) is never deleted.
    """
    candidates = [j for j in jobs if j.state in DELETABLE]
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
            shutil.rmtree(job.output_dir)
            deleted.append(job)
        finally:
            lock.release()
    log.info("deleted %d job directories", len(deleted))
    return deleted
