"""Upstream DomainBed's sweep API (``domainbed.scripts.sweep``): ``Job``, ``make_args_list``,
``ask_for_confirmation``, with upstream's behaviour, over our job list.

Departures, each kept on purpose: job ids ignore paths unless ``hash_paths=True`` (upstream's
ids, to pick up a sweep upstream started); ``Job.delete`` never deletes the directory of a job
that a process is running; the ``command`` list that our launchers run starts with this
interpreter, while ``command_str`` is upstream's text (``python -m ...``).
"""

import copy
import os
import shlex
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from domainbed.lib import run_dir
from domainbed.sweep import jobs as _jobs


def _render(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, str):
        return shlex.quote(value)
    return str(value)


def upstream_command_str(train_args: Dict[str, Any]) -> str:
    """``python -m domainbed.scripts.train --key value ...`` in sorted key order, as upstream:
    lists as space-separated items, strings shell-quoted, anything else ``str``."""
    words = ["python", "-m", _jobs.TRAIN_MODULE]
    words += [f"--{key} {_render(train_args[key])}" for key in sorted(train_args)]
    return " ".join(words)


def _argv(train_args: Dict[str, Any]) -> List[str]:
    argv: List[str] = []
    for key in sorted(train_args):
        value = train_args[key]
        argv.append(f"--{key}")
        argv.extend(str(v) for v in value) if isinstance(value, list) else argv.append(str(value))
    return argv


class Job(_jobs.Job):
    """Upstream's ``Job(train_args, sweep_output_dir)``: ``output_dir``, ``train_args`` (a deep
    copy plus ``output_dir``), ``command_str`` and ``state`` (Done, Incomplete or Not
    launched, read once at construction)."""

    NOT_LAUNCHED = run_dir.NOT_LAUNCHED_STATE
    INCOMPLETE = run_dir.INCOMPLETE_STATE
    DONE = run_dir.DONE_STATE
    state = None       # instance attributes here, not the base class's live properties
    command_str = None

    def __init__(self, train_args: Dict[str, Any], sweep_output_dir: str,
                 hash_paths: bool = False, train_command: Optional[Sequence[str]] = None):
        self.job_id = _jobs.job_hash(train_args, with_paths=hash_paths)
        self.output_dir = os.path.join(sweep_output_dir, self.job_id)
        self.train_args = copy.deepcopy(train_args)
        self.train_args["output_dir"] = self.output_dir
        self.command_str = upstream_command_str(self.train_args)
        prefix = list(train_command) if train_command else _jobs.default_train_command()
        self.command = prefix + _argv(self.train_args)
        if os.path.exists(os.path.join(self.output_dir, run_dir.DONE)):
            self.state = Job.DONE
        elif os.path.exists(self.output_dir):
            self.state = Job.INCOMPLETE
        else:
            self.state = Job.NOT_LAUNCHED

    def __str__(self) -> str:
        a = self.train_args
        job_info = (a["dataset"], a["algorithm"], a["test_envs"], a["hparams_seed"])
        return f"{self.state}: {self.output_dir} {job_info}"

    @staticmethod
    def launch(jobs: Sequence["Job"], launcher_fn: Callable[[List[str]], Any]) -> None:
        """Create the jobs' directories and give ``launcher_fn`` their ``command_str`` in a
        random order (upstream's unseeded shuffle)."""
        print("Launching...")
        jobs = list(jobs)
        np.random.shuffle(jobs)
        print("Making job directories:")
        from tqdm import tqdm
        for job in tqdm(jobs, leave=False):
            os.makedirs(job.output_dir, exist_ok=True)
        launcher_fn([job.command_str for job in jobs])
        print(f"Launched {len(jobs)} jobs!")

    @staticmethod
    def delete(jobs: Sequence["Job"]) -> None:
        """Delete the jobs' directories, except those of jobs a process is running."""
        print("Deleting...")
        n_deleted = 0
        for job in jobs:
            lock = run_dir.RunLock(job.output_dir)
            if os.path.isdir(job.output_dir) and not lock.acquire():
                print(f"Kept {job.output_dir}: it is running")
                continue
            try:
                if os.path.isdir(job.output_dir):
                    run_dir.delete_locked(job.output_dir)
                n_deleted += 1
            finally:
                lock.release()
        print(f"Deleted {n_deleted} jobs!")


def make_args_list(n_trials, dataset_names, algorithms, n_hparams_from, n_hparams, steps,
                   data_dir, task, holdout_fraction, single_test_envs, hparams):
    """Upstream's job arguments: trial x dataset x algorithm x test envs x hparams seed, each
    dict keyed dataset, algorithm, test_envs, holdout_fraction, hparams_seed, data_dir, task,
    trial_seed, seed, then steps and hparams when not None."""
    return _jobs.make_args_list(n_trials, dataset_names, algorithms, n_hparams_from, n_hparams,
                                steps, data_dir, task, holdout_fraction, single_test_envs,
                                hparams, upstream_args=True)


def ask_for_confirmation() -> None:
    """Ask ``Are you sure? (y/n) ``; anything but an answer starting with y exits (status 0)."""
    response = input("Are you sure? (y/n) ")
    if not response.strip().lower().startswith("y"):
        print("Nevermind!")
        exit(0)
