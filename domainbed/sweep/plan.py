"""Multi-stage sweeps: a ``Plan`` is stages run in order, each either training sweeps
(``SweepSpec`` values, run by a launcher) or one in-process step (e.g. training shared linear
probes, building a pool, writing a report).

An extension turns a file into a plan (``hooks.PLAN_READERS``, e.g. the ratatouille recipe
of ``domainbed_aux``); the core runs it: locally in order (finished runs are reused), listed
(the dummy launcher: job counts per stage, nothing written), or submitted to a launcher
that queues jobs with dependencies (SLURM: ``afterok`` between stages). ``execute`` is the
one runner both command lines call; a queued stage job runs ``domainbed.scripts.stage
SOURCE STAGE``, where SOURCE is the file the plan is read again from.
"""

import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from domainbed.datasets.registry import split_dataset_root
from domainbed.errors import DomainBedError
from domainbed.lib import run_dir
from domainbed.sweep import actions, hooks, memory
from domainbed.sweep.options import check_data_dir, list_jobs
from domainbed.sweep.spec import SweepSpec, spec_from_dict, spec_to_dict

log = logging.getLogger(__name__)


class PlanError(DomainBedError):
    """A stage of a plan that cannot run or did not finish."""


@dataclass
class Stage:
    """One stage: training ``sweeps``, or an in-process ``step``.

    ``count`` says how many units of work the stage has (for a step: e.g. probes to train);
    ``unit`` names them. ``details`` lists what the stage runs (the dry run). ``listable``
    tells whether its jobs can be listed now, before the earlier stages ran (on SLURM a stage
    that cannot becomes one stage job that lists and submits its jobs when it starts)."""

    name: str
    sweeps: List[SweepSpec] = field(default_factory=list)
    step: Optional[Callable[[], None]] = None
    count: Optional[Callable[[], int]] = None
    unit: str = ""
    details: Optional[Callable[[], List[str]]] = None
    listable: Callable[[], bool] = lambda: False

    @property
    def is_training(self) -> bool:
        return self.step is None

    def n_jobs(self) -> int:
        if self.count is not None:
            return self.count()
        return sum(len(list_jobs(spec.replace(mode="ids"))) for spec in self.sweeps)


@dataclass
class Plan:
    """Stages in order, under one output ``root``; ``launcher_defaults`` are the options of
    a launcher when the user gives none (e.g. ``{"local": {"in_process": True}}``);
    ``outputs`` the files a finished run points the user to (e.g. its report)."""

    name: str
    root: str
    stages: List[Stage]
    launcher_defaults: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    outputs: List[str] = field(default_factory=list)  # files to point the user to at the end

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise PlanError(f"the plan has no stage {name!r}; its stages: "
                        + ", ".join(s.name for s in self.stages))


def describe(plan: Plan) -> List[str]:
    """One line per stage (name, job count, what it runs) and the total: the dry run."""
    lines, total = [], 0
    for stage in plan.stages:
        n = stage.n_jobs()
        if stage.is_training:
            total += n
            what = f"training jobs in {len(stage.sweeps)} sweeps"
        else:
            what = stage.unit
        lines.append(f"stage {stage.name}: {n} {what}")
        if stage.details is not None:
            lines.extend("  " + d for d in stage.details())
    lines.append(f"total: {total} training jobs")
    return lines


def launcher_options(plan: Plan, launcher_name: str, options: Dict[str, Any],
                     typed: Iterable[str] = ()) -> Dict[str, Any]:
    """The launcher's options: the plan's defaults for it, except those the user ``typed``
    (option names), which keep the user's value."""
    typed = set(typed)
    merged = dict(options)
    for key, value in plan.launcher_defaults.get(launcher_name, {}).items():
        if key not in typed:
            merged[key] = value
    return merged


def _own_root(dataset: str) -> Optional[str]:
    """The folder of ``folder:NAME=PATH`` (a dataset that does not read --data_dir)."""
    try:
        return split_dataset_root(dataset)[1]
    except ValueError:
        return None  # listing the jobs names the bad value


def _check_data(spec: SweepSpec, dry_run: bool) -> None:
    """``--data_dir`` must exist when some dataset of the sweep reads it (``folder:NAME=PATH``
    does not); listing only warns, it reads no data."""
    if all(_own_root(d) for d in spec.datasets or [""]):
        return
    if not dry_run:
        check_data_dir(spec.data_dir)
    elif spec.data_dir and not os.path.isdir(spec.data_dir):
        log.warning("--data_dir %s does not exist yet: the commands listed need it to run",
                    spec.data_dir)


def launch_sweep(spec: SweepSpec, launcher, options: Dict[str, Any],
                 skip_confirmation: bool = False, train_command: Optional[Sequence[str]] = None):
    """List the sweep's jobs and launch those not done (``actions.launch``); unless the
    launcher only lists (``dry_run``), the sweep's spec is written into its folder
    (``memory``) and the before-launch hooks run. Returns the jobs launched (None if
    declined)."""
    dry_run = getattr(launcher, "dry_run", False)
    _check_data(spec, dry_run)
    if dry_run:
        spec = spec.replace(mode="list")
    jobs = list_jobs(spec, train_command)
    before = [] if dry_run else _before_launch(spec)
    return actions.launch(jobs, launcher, skip_confirmation=skip_confirmation,
                          before_launch=before, **options)


def _before_launch(spec: SweepSpec) -> List[Callable[[List[Any]], None]]:
    """What runs before a sweep's jobs start: its spec written into its folder (``memory``),
    then the extensions' before-launch hooks, each given the jobs to launch."""
    return [lambda to_launch: memory.write_spec(spec)] + [
        (lambda to_launch, hook=hooks.BEFORE_LAUNCH.get(n): hook(to_launch, sweep_args=spec))
        for n in hooks.BEFORE_LAUNCH.names()]


def launch_sweeps(specs: Sequence[SweepSpec], launcher, options: Dict[str, Any]) -> None:
    """Launch the jobs of several sweeps with one launcher call, so that a launcher running
    several jobs at once keeps its slots busy across sweeps (each sweep's before-launch
    hooks get its own jobs first)."""
    jobs = []
    for i, spec in enumerate(specs):
        _check_data(spec, dry_run=False)
        log.info("sweep %d/%d (%s)", i + 1, len(specs), spec.output_dir)
        to_launch = actions.launchable(list_jobs(spec))
        if to_launch:
            for hook in _before_launch(spec):
                hook(to_launch)
        jobs.extend(to_launch)
    if not jobs:
        log.info("nothing to launch")
        return
    name = getattr(launcher, "name", None) or type(launcher).__name__
    log.info("launching %d jobs of %d sweeps with %s", len(jobs), len(specs), name)
    launcher(jobs, **options)


def run_stage(stage: Stage, launcher, options: Dict[str, Any]) -> None:
    """Run one stage here (its sweeps with ``launcher``: a launcher that waits for its jobs
    gets every sweep's jobs in one call); raises PlanError when a job is left unfinished."""
    if stage.step is not None:
        stage.step()
        return
    dry_run = getattr(launcher, "dry_run", False)
    if dry_run or options.get("wait") is False:
        for i, spec in enumerate(stage.sweeps):
            log.info("stage %s: sweep %d/%d (%s)", stage.name, i + 1, len(stage.sweeps),
                     spec.output_dir)
            launch_sweep(spec, launcher, options, skip_confirmation=True)
        return
    launch_sweeps(stage.sweeps, launcher, options)
    for spec in stage.sweeps:
        jobs = list_jobs(spec.replace(mode="ids"))
        left = [j for j in jobs if j.state != run_dir.DONE_STATE]
        if left:
            lines, _ = actions.summary(jobs)
            for line in lines:
                log.info("stage %s: %s", stage.name, line.strip())
            failed = actions.failures(left)
            why = f": {failed[0][1]}" if failed else ""
            raise PlanError(f"stage {stage.name}: {len(left)} jobs are not done, e.g. "
                            f"{left[0].name} in {left[0].output_dir}{why}; fix them and run "
                            "again (finished work is reused)")
    log.info("stage %s: done", stage.name)


def run_locally(plan: Plan, launcher, options: Dict[str, Any],
                only: Optional[Sequence[str]] = None) -> None:
    """Run every stage in order (or only the named ones)."""
    for stage in plan.stages:
        if only and stage.name not in only:
            continue
        log.info("stage %s: %d %s", stage.name, stage.n_jobs(),
                 "jobs" if stage.is_training else stage.unit)
        run_stage(stage, launcher, options)


# ------------------------------------------------------------------ submitted plans

STAGE_JOB_MODULE = "domainbed.scripts.stage"
SOURCES_DIR = ".plan"  # under the plan's root: what its stage jobs read the plan from


def write_source(plan: Plan, spec: SweepSpec, launcher_name: str,
                 options: Dict[str, Any]) -> str:
    """Write what a stage job needs to read ``plan`` again and run one of its stages: the
    sweep spec the plan was read from (paths absolute), the launcher and its options.
    Returns the file's path, ``<root>/.plan/<md5 of the content>.json`` (a later submission
    with other options writes another file; queued stage jobs keep reading theirs)."""
    from domainbed.lib.atomic import atomic_write_text
    source = {"format": 1, "spec": spec_to_dict(_absolute(spec)), "launcher": launcher_name,
              "options": {k: v for k, v in options.items() if k != "wait"}}
    text = json.dumps(source, indent=1, sort_keys=True) + "\n"
    folder = os.path.join(os.path.abspath(plan.root), SOURCES_DIR)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, hashlib.md5(text.encode()).hexdigest() + ".json")
    if not os.path.exists(path):
        atomic_write_text(path, text)
    return path


def read_source(path: str) -> Tuple[SweepSpec, str, Dict[str, Any]]:
    """(spec, launcher name, launcher options) of a file ``write_source`` wrote."""
    try:
        with open(path, encoding="utf-8") as f:
            source = json.load(f)
        return spec_from_dict(source["spec"]), str(source["launcher"]), dict(source["options"])
    except KeyError as exc:
        raise PlanError(f"{path} is not a plan source written by a submission (no {exc} "
                        "key); submit the plan again") from None
    except (OSError, ValueError, TypeError) as exc:
        raise PlanError(f"cannot read the plan of a stage job from {path}: {exc}") from None


def _absolute(spec: SweepSpec) -> SweepSpec:
    """``spec`` with its folders and the files its options name as absolute paths (a stage
    job may start in another working directory)."""
    changes: Dict[str, Any] = {}
    for name in ("output_dir", "data_dir"):
        if getattr(spec, name):
            changes[name] = os.path.abspath(getattr(spec, name))
    for name, value in spec.options.items():
        if isinstance(value, str) and value and os.path.exists(value):
            changes[name] = os.path.abspath(value)
    return spec.replace(**changes)


def stage_job_command(source: str, stage: str) -> List[str]:
    """The command of a queued job that runs one stage of a plan: the plan's source file
    and the stage's name (the one place that renders it)."""
    return [sys.executable, "-m", STAGE_JOB_MODULE, source, stage]


def submit(plan: Plan, launcher, options: Dict[str, Any], source: str
           ) -> Dict[str, List[str]]:
    """Submit every stage to a launcher with the ``dependencies`` capability, each stage
    after the previous one; returns the queue's job ids per stage.

    A stage whose jobs can be listed now (``Stage.listable``) is one submission of its
    jobs, without those that are done or still queued from an earlier submission (the next
    stage waits for those too); any other stage is one small job (``stage_job_command``
    with the plan's ``source`` file), which lists and submits its jobs when it starts, then
    waits for them."""
    from domainbed.command_launchers.core.base import Task
    options = {k: v for k, v in options.items() if k != "wait"}
    ids: Dict[str, List[str]] = {}
    previous: List[str] = []
    for stage in plan.stages:
        waiting: List[str] = []
        if stage.is_training and stage.listable():
            jobs = [j for spec in stage.sweeps for j in list_jobs(spec)
                    if j.state != run_dir.DONE_STATE]
            queued = actions.queued_dirs(jobs)
            waiting = [run_dir.read_submission(j.output_dir) for j in jobs
                       if j.output_dir in queued]
            jobs = [j for j in jobs if j.output_dir not in queued]
        else:  # no run directory: the job succeeded when its command exits 0
            jobs = [Task(stage_job_command(source, stage.name), None,
                         f"{plan.name} stage {stage.name}")]
        if not jobs and not waiting:
            log.info("stage %s: every job is done", stage.name)
            continue
        submitted = launcher.submit(jobs, after=previous, job_name=f"recipe-{stage.name}",
                                    **options) if jobs else []
        ids[stage.name] = [s.job_id for s in submitted] + waiting
        log.info("stage %s: %d queued jobs (after %s)%s", stage.name, len(submitted),
                 ",".join(previous) or "nothing",
                 f"; {len(waiting)} still queued from an earlier submission" if waiting else "")
        previous = ids[stage.name]
    return ids


def execute(plan: Plan, spec: SweepSpec, launcher, options: Dict[str, Any],
            only: Optional[Sequence[str]] = None) -> List[str]:
    """Run a plan the way ``launcher`` can (the one plan runner of every command line):
    list it (``lists_only``: job counts per stage), submit every stage at once
    (``dependencies``), or run its stages here in order (``only``: these stages).
    ``spec`` is what the plan was read from (a stage job reads it again). Returns the lines
    to print."""
    if launcher.dry_run:
        return describe(plan)
    if "dependencies" in launcher.capabilities:
        if only:
            raise PlanError("--only runs stages here; a launcher that queues the plan "
                            "submits every stage (--stage NAME runs one)")
        source = write_source(plan, spec, launcher.name, options)
        ids = submit(plan, launcher, options, source)
        kind = launcher.queue_name or launcher.name
        return [f"stage {name}: {kind} jobs {','.join(job_ids)}"
                for name, job_ids in ids.items()]
    start = time.time()
    run_locally(plan, launcher, options, only=only)
    lines = ["", f"{plan.name} finished in {time.time() - start:.0f} s; files are under "
                 f"{plan.root}"]
    # announce only what this command wrote
    return lines + [f"  {output}" for output in plan.outputs if _written_since(output, start)]


def execute_stage(plan: Plan, name: str, launcher, options: Dict[str, Any]) -> None:
    """Run one stage of the plan here (what a stage job runs); a launcher that queues
    waits for the stage's jobs."""
    options = dict(options)
    if "queue" in launcher.capabilities:
        options["wait"] = True
    run_stage(plan.stage(name), launcher, options)


def _written_since(output: str, start: float) -> bool:
    """Whether the file an output line names (``"what: PATH"``) was written since
    ``start``."""
    path = output.split(": ", 1)[-1]
    try:
        return os.path.getmtime(path) >= start - 1
    except OSError:
        return False


def read_plan(spec: SweepSpec) -> Optional[Plan]:
    """The plan an installed extension reads from the sweep's options (e.g. ``--recipe
    FILE``), or None for an ordinary sweep."""
    for name in hooks.PLAN_READERS.names():
        plan = hooks.PLAN_READERS.get(name)(spec)
        if plan is not None:
            return plan
    return None
