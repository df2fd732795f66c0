"""The ``sweep`` command line: its options and the job list they describe.

Upstream DomainBed's flags are kept; the paper's code words ``--dataset D`` and
``--test_env k`` are accepted too. Launchers and extensions add their own options.
"""

import argparse
import json
import os
from typing import Any, Dict, List, Optional, Sequence

from domainbed.errors import DomainBedError
from domainbed.sweep import hooks
from domainbed.sweep.jobs import Job, make_args_list, make_jobs

TASKS = ("domain_generalization", "domain_adaptation")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m domainbed.scripts.sweep`` with every registered extension."""
    from domainbed.command_launchers import REGISTRY
    from domainbed.plugins import SWEEP_PLUGINS, load_plugins
    load_plugins(SWEEP_PLUGINS)  # sweep options and hooks; models load when a job needs them
    parser = argparse.ArgumentParser(
        prog="python -m domainbed.scripts.sweep",
        description="Run a sweep of training jobs: each (trial seed, dataset, algorithm, test "
                    "envs, hparams seed) is one run directory in --output_dir.")
    parser.add_argument("command", choices=["launch", "delete_incomplete", "status"])
    parser.add_argument("--datasets", nargs="+", default=None,
                        help="default: every registered dataset")
    parser.add_argument("--dataset", default=None, help="one dataset (same as --datasets D)")
    parser.add_argument("--algorithms", nargs="+", default=None,
                        help="default: every registered algorithm")
    parser.add_argument("--task", choices=TASKS, default="domain_generalization")
    parser.add_argument("--n_hparams_from", type=int, default=0)
    parser.add_argument("--n_hparams", type=int, default=20)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n_trials", type=int, default=3)
    parser.add_argument("--command_launcher", default="local",
                        help=f"one of: {', '.join(REGISTRY.names())}")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--checkpoint_freq", type=int, default=None)
    parser.add_argument("--hparams", default=None, help="JSON object of hparam overrides")
    parser.add_argument("--holdout_fraction", type=float, default=0.2)
    parser.add_argument("--single_test_envs", action="store_true")
    parser.add_argument("--test_env", type=int, default=None,
                        help="only this test env (-1: no test env, every domain trains)")
    parser.add_argument("--skip_model_save", action="store_true")
    parser.add_argument("--train_extra", default=None,
                        help='JSON object of extra training flags for every job, e.g. '
                             '\'{"save_model_every_checkpoint": true}\'')
    parser.add_argument("--skip_confirmation", action="store_true")
    parser.add_argument("--upstream_job_ids", action="store_true",
                        help="upstream DomainBed's job arguments and ids (paths hashed in), to "
                             "continue a sweep that upstream's sweep script started")
    for name in REGISTRY.names():
        REGISTRY.get(name).add_arguments(parser)
    for name in hooks.SWEEP_ARGUMENTS.names():
        hooks.SWEEP_ARGUMENTS.get(name)(parser)
    return parser


def _datasets(args: argparse.Namespace) -> List[str]:
    if args.dataset is not None:
        if args.datasets is not None and args.datasets != [args.dataset]:
            raise DomainBedError("give either --dataset D or --datasets D1 D2 ..., not both")
        return [args.dataset]
    if args.datasets is not None:
        return list(args.datasets)
    from domainbed.datasets import DATASETS
    return list(DATASETS)


def _algorithms(args: argparse.Namespace) -> List[str]:
    if args.algorithms is not None:
        return list(args.algorithms)
    from domainbed.algorithms import ALGORITHMS
    return list(ALGORITHMS)


def _train_extra(text: Optional[str]) -> Dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise DomainBedError(f"--train_extra must be a JSON object, got {text!r} ({exc})") from None
    if not isinstance(value, dict):
        raise DomainBedError(f"--train_extra must be a JSON object of flag: value, got {text!r}")
    return value


def train_args_list(args: argparse.Namespace) -> List[Dict[str, Any]]:
    """The training arguments of the sweep's jobs, before any job transformer."""
    return make_args_list(
        n_trials=args.n_trials, dataset_names=_datasets(args), algorithms=_algorithms(args),
        n_hparams_from=args.n_hparams_from, n_hparams=args.n_hparams, steps=args.steps,
        data_dir=args.data_dir, task=args.task, holdout_fraction=args.holdout_fraction,
        single_test_envs=args.single_test_envs, hparams=args.hparams, seed=args.seed,
        test_env=args.test_env, checkpoint_freq=args.checkpoint_freq,
        skip_model_save=args.skip_model_save, extra_args=_train_extra(args.train_extra),
        upstream_args=args.upstream_job_ids)


def jobs_from_args(args: argparse.Namespace,
                   train_command: Optional[Sequence[str]] = None) -> List[Job]:
    """The sweep's jobs, after every registered job transformer."""
    args_list = train_args_list(args)
    for name in hooks.JOB_TRANSFORMERS.names():
        transform = hooks.JOB_TRANSFORMERS.get(name)
        args_list = [transform(dict(a), args) for a in args_list]
    return make_jobs(args_list, args.output_dir, train_command,
                     hash_paths=args.upstream_job_ids)


def check_data_dir(data_dir: Optional[str]) -> None:
    """``launch`` needs an existing --data_dir."""
    if not data_dir:
        raise DomainBedError("launch needs --data_dir: the folder that holds the datasets "
                             "(see python -m domainbed.scripts.download)")
    if not os.path.isdir(data_dir):
        raise DomainBedError(f"--data_dir {data_dir!r} does not exist or is not a folder; "
                             "pass the folder that holds the datasets (see "
                             "python -m domainbed.scripts.download)")
