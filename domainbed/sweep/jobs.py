"""The job list of a sweep: one training run per (trial, dataset, algorithm, test envs, hparams).

A job is its training arguments. Its directory is ``<sweep output_dir>/<job_hash>``, where
the hash covers every argument except paths (``data_dir``, ``output_dir`` and any absolute
path), so a sweep keeps its job ids when the data or the sweep folder move.
"""

import hashlib
import json
import os
import shlex
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

from domainbed.errors import DomainBedError
from domainbed.lib import run_dir
from domainbed.algorithms.registry import algorithm_names
from domainbed.datasets.registry import dataset_names, num_environments, split_dataset_root
from domainbed.lib.seeds import seed_hash

TRAIN_MODULE = "domainbed.scripts.train"
PATH_ARGS = ("data_dir", "output_dir")  # never part of a job's hash
NO_TEST_ENV = -1  # ``--test_envs -1``: every domain trains (auxiliary runs)


def default_train_command() -> List[str]:
    """The training entry point, run with this interpreter."""
    return [sys.executable, "-m", TRAIN_MODULE]


def all_test_env_combinations(n_envs: int) -> List[List[int]]:
    """Every single test env and every pair, in a fixed order: [0], [0, 1], [0, 2], [1], ..."""
    combos = []
    for i in range(n_envs):
        combos.append([i])
        for j in range(i + 1, n_envs):
            combos.append([i, j])
    return combos


def _is_absolute_path(value: Any) -> bool:
    return isinstance(value, str) and os.path.isabs(value)


def hashed_args(train_args: Dict[str, Any]) -> Dict[str, Any]:
    """The arguments that identify a job: all but paths and unset values."""
    return {k: v for k, v in train_args.items()
            if k not in PATH_ARGS and v is not None and v is not False
            and not _is_absolute_path(v)}


def job_hash(train_args: Dict[str, Any], with_paths: bool = False) -> str:
    """md5 of the job's identifying arguments (see ``hashed_args``) as sorted JSON.

    ``with_paths`` hashes every argument as given, paths included: upstream DomainBed's job
    id, to pick up a sweep that upstream started (its ids change when the data move).
    """
    text = json.dumps(train_args if with_paths else hashed_args(train_args), sort_keys=True)
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def train_flags(train_args: Dict[str, Any]) -> List[str]:
    """``--key value`` flags in key order: lists give several values, dicts JSON, True a bare
    flag; None and False are left out."""
    flags: List[str] = []
    for key in sorted(train_args):
        value = train_args[key]
        if value is None or value is False:
            continue
        flags.append(f"--{key}")
        if value is True:
            continue
        if isinstance(value, (list, tuple)):
            flags.extend(str(v) for v in value)
        elif isinstance(value, dict):
            flags.append(json.dumps(value, sort_keys=True))
        else:
            flags.append(str(value))
    return flags


class Job:
    """One training run of a sweep: its arguments, directory, command and state."""

    NOT_LAUNCHED = run_dir.NOT_LAUNCHED_STATE
    INCOMPLETE = run_dir.INCOMPLETE_STATE
    RUNNING = run_dir.RUNNING_STATE
    FAILED = run_dir.FAILED_STATE
    DONE = run_dir.DONE_STATE
    _ours = False  # set by __init__: the command is our entry point with this interpreter

    def __init__(self, train_args: Dict[str, Any], sweep_output_dir: str,
                 train_command: Optional[Sequence[str]] = None, hash_paths: bool = False):
        self.job_id = job_hash(train_args, with_paths=hash_paths)
        self.output_dir = os.path.join(os.path.abspath(sweep_output_dir), self.job_id)
        self.train_args = dict(train_args)
        self.train_args["output_dir"] = self.output_dir
        if self.train_args.get("data_dir"):
            self.train_args["data_dir"] = os.path.abspath(self.train_args["data_dir"])
        prefix = list(train_command) if train_command else default_train_command()
        # our own entry point with this interpreter: the job is also a typed call
        self._ours = prefix == default_train_command()
        self.command: List[str] = prefix + train_flags(self.train_args)

    @property
    def call(self) -> Optional[Callable[[], int]]:
        """The run as a typed call, ``run_job(config)`` (what in-process launchers run);
        None when the job's command is another program (a ``train_command`` of the user's)
        or its arguments are not a training config (its command then says why)."""
        if not self._ours:
            return None
        from domainbed.training.config import TrainConfig
        from domainbed.training.job import training_call
        try:
            return training_call(TrainConfig.from_train_args(self.train_args))
        except DomainBedError:
            return None

    @property
    def command_str(self) -> str:
        """The command as one shell-safe line."""
        return shlex.join(self.command)

    @property
    def state(self) -> str:
        """Done, Running, Failed, Incomplete or Not launched (read from disk now)."""
        return run_dir.run_state(self.output_dir)

    @property
    def name(self) -> str:
        a = self.train_args
        return (f"{a.get('algorithm')} {a.get('dataset')} test_envs={a.get('test_envs')} "
                f"hparams_seed={a.get('hparams_seed')} trial_seed={a.get('trial_seed')} "
                f"[{self.job_id[:8]}]")

    def __repr__(self) -> str:
        return f"Job({self.name})"


def _n_environments(dataset: str, data_dir: Optional[str]) -> int:
    try:
        return num_environments(dataset, data_dir)
    except KeyError:
        raise DomainBedError(
            f"unknown dataset {dataset!r}; choose --datasets from: "
            f"{', '.join(dataset_names())}") from None


def check_algorithms(algorithms: Iterable[str]) -> None:
    """Fail with the known names when an algorithm is not registered (torch-free)."""
    algorithms = list(algorithms)
    known = algorithm_names()
    unknown = [a for a in algorithms if a not in known]
    if unknown:
        raise DomainBedError(f"unknown algorithm {unknown[0]!r}; choose --algorithms from: "
                             f"{', '.join(known)}")


def normalise_hparams(hparams: Optional[str]) -> Optional[str]:
    """The ``--hparams`` JSON object as canonical text (sorted keys), or None."""
    if hparams is None or hparams == "":
        return None
    try:
        value = json.loads(hparams)
    except ValueError as exc:
        raise DomainBedError(f"--hparams must be a JSON object, got {hparams!r} ({exc})") from None
    if not isinstance(value, dict):
        raise DomainBedError(f"--hparams must be a JSON object like '{{\"lr\": 1e-4}}', "
                             f"got {hparams!r}")
    return json.dumps(value, sort_keys=True)


def make_args_list(n_trials: int, dataset_names: Sequence[str], algorithms: Sequence[str],
                   n_hparams_from: int, n_hparams: int, steps: Optional[int],
                   data_dir: Optional[str], task: str, holdout_fraction: float,
                   single_test_envs: bool, hparams: Optional[str], *, seed: int = 0,
                   test_env: Optional[int] = None, checkpoint_freq: Optional[int] = None,
                   skip_model_save: bool = False,
                   extra_args: Optional[Dict[str, Any]] = None,
                   upstream_args: bool = False) -> List[Dict[str, Any]]:
    """The training arguments of every job, in order trial x dataset x algorithm x test
    envs x hparams seed.

    ``test_env`` restricts every dataset to that single test env (-1: no test env, every
    domain trains). ``extra_args`` are added to every job (they become training flags).
    ``upstream_args`` gives upstream DomainBed's dicts: its seed
    ``seed_hash(dataset, algorithm, test_envs, hparams_seed, trial_seed)``, ``--hparams`` as
    given, and ``steps``, ``hparams`` and our own keys only when set.
    """
    if n_trials < 1:
        raise DomainBedError(f"--n_trials must be >= 1, got {n_trials}")
    if not 0 <= n_hparams_from < n_hparams:
        raise DomainBedError(f"need 0 <= --n_hparams_from < --n_hparams, got "
                             f"{n_hparams_from} and {n_hparams}")
    if not 0 < holdout_fraction < 1:
        raise DomainBedError(f"--holdout_fraction must be in (0, 1), got {holdout_fraction}")
    hparams = hparams if upstream_args and hparams else normalise_hparams(hparams)
    check_algorithms(algorithms)
    # ``folder:NAME=PATH``: the dataset folder:NAME, its jobs' --data_dir PATH (not hashed)
    data_dirs = {}
    for entry in dataset_names:
        try:
            name, root = split_dataset_root(entry)
        except ValueError as exc:
            raise DomainBedError(f"{exc} (--datasets)") from None
        data_dirs[name] = root or data_dir
    dataset_names = list(data_dirs)
    test_envs_of = {}
    for dataset in dataset_names:
        n_envs = _n_environments(dataset, data_dirs[dataset])
        if test_env is None:
            combos = ([[i] for i in range(n_envs)] if single_test_envs
                      else all_test_env_combinations(n_envs))
        elif test_env == NO_TEST_ENV or 0 <= test_env < n_envs:
            combos = [[test_env]]
        else:
            raise DomainBedError(f"--test_env {test_env} is out of range for {dataset} "
                                 f"({n_envs} environments): use 0..{n_envs - 1}, or -1 for no "
                                 "test environment")
        test_envs_of[dataset] = combos
        if (extra_args or {}).get("score_test_once") and any(len(c) > 1 for c in combos):
            raise DomainBedError(
                f"score_test_once (--train_extra): this sweep trains {dataset} with two test "
                "envs too, and leave-one-domain-out selection then reads the test scores of "
                "the single-test-env runs at every record; add --single_test_envs (or "
                "--test_env k), or drop score_test_once")

    args_list = []
    for trial_seed in range(n_trials):
        for dataset in dataset_names:
            for algorithm in algorithms:
                for test_envs in test_envs_of[dataset]:
                    for hparams_seed in range(n_hparams_from, n_hparams):
                        train_args = {
                            "dataset": dataset,
                            "algorithm": algorithm,
                            "test_envs": list(test_envs),
                            "holdout_fraction": holdout_fraction,
                            "hparams_seed": hparams_seed,
                            "data_dir": data_dirs[dataset],
                            "task": task,
                            "trial_seed": trial_seed,
                            "seed": seed_hash(seed, trial_seed, dataset, algorithm, test_envs,
                                              hparams_seed),
                            "steps": steps,
                            "hparams": hparams,
                            "checkpoint_freq": checkpoint_freq,
                            "skip_model_save": bool(skip_model_save),
                        }
                        train_args.update(extra_args or {})
                        if upstream_args:
                            train_args = _upstream_args(train_args)
                        args_list.append(train_args)
    return args_list


def _upstream_args(train_args: Dict[str, Any]) -> Dict[str, Any]:
    """Upstream's seed (its sweep ignores ``--seed``) and key order, and no key for an unset
    value (upstream writes none of ours)."""
    a = train_args
    a["seed"] = seed_hash(a["dataset"], a["algorithm"], a["test_envs"], a["hparams_seed"],
                          a["trial_seed"])
    fixed = ("dataset", "algorithm", "test_envs", "holdout_fraction", "hparams_seed",
             "data_dir", "task", "trial_seed", "seed")
    return dict({k: a[k] for k in fixed},
                **{k: v for k, v in a.items() if k not in fixed and v is not None
                   and v is not False})


def make_jobs(args_list: Sequence[Dict[str, Any]], sweep_output_dir: str,
              train_command: Optional[Sequence[str]] = None,
              hash_paths: bool = False) -> List[Job]:
    """One ``Job`` per argument dict; two jobs with the same id are an error.
    ``hash_paths``: upstream's job ids (see ``job_hash``)."""
    jobs = [Job(a, sweep_output_dir, train_command, hash_paths) for a in args_list]
    seen: Dict[str, Job] = {}
    for job in jobs:
        other = seen.setdefault(job.job_id, job)
        if other is not job:
            raise DomainBedError(
                f"two jobs of the sweep share the id {job.job_id} (their arguments differ only "
                f"in absolute paths, which job ids ignore): {other.train_args} and "
                f"{job.train_args}; make them differ in another argument")
    return jobs
