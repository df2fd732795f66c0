"""The ``sweep`` command line: its options and the job list they describe.

Upstream DomainBed's flags are kept; the paper's code words ``--dataset D`` and
``--test_env k`` are accepted too. Launchers and extensions add their own options.
"""

import argparse
import difflib
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Union

from domainbed.errors import DomainBedError
from domainbed.sweep import hooks
from domainbed.sweep.jobs import Job, make_args_list, make_jobs
from domainbed.sweep.spec import TASKS, SweepSpec, spec_fields

# options of the command line that describe neither the jobs nor an extension's planning
_NOT_SPEC = ("command", "skip_confirmation", "command_launcher", "stage", "only")


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
    parser.add_argument("--output_dir", default=None,
                        help="the sweep folder (required; with --recipe, default: the "
                             "recipe's output_root)")
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
    parser.add_argument("--stage", default=None, metavar="NAME",
                        help="with a multi-stage plan (e.g. --recipe): run this stage only, "
                             "here (what a SLURM stage job runs)")
    parser.add_argument("--only", nargs="+", default=None, metavar="STAGE",
                        help="with a multi-stage plan run locally: run only these stages")
    parser.add_argument("--upstream_job_ids", action="store_true",
                        help="upstream DomainBed's job arguments and ids (paths hashed in), to "
                             "continue a sweep that upstream's sweep script started")
    for name in REGISTRY.names():
        REGISTRY.get(name).add_arguments(parser)
    for name in hooks.SWEEP_ARGUMENTS.names():
        hooks.SWEEP_ARGUMENTS.get(name)(parser)
    return parser


def datasets_of(args, default: Optional[List[str]] = None) -> Optional[List[str]]:
    """``--dataset D`` or ``--datasets D1 D2 ...`` of a parsed command line (else
    ``default``)."""
    dataset = getattr(args, "dataset", None)
    if dataset is not None:
        if args.datasets is not None and list(args.datasets) != [dataset]:
            raise DomainBedError("give either --dataset D or --datasets D1 D2 ..., not both")
        return [dataset]
    if args.datasets is not None:
        return list(args.datasets)
    return default


def _datasets(spec: SweepSpec) -> List[str]:
    if spec.datasets is not None:
        return list(spec.datasets)
    from domainbed.datasets import DATASETS
    return list(DATASETS)


def _algorithms(spec: SweepSpec) -> List[str]:
    if spec.algorithms is not None:
        return list(spec.algorithms)
    from domainbed.algorithms import ALGORITHMS
    return list(ALGORITHMS)


def parse_train_extra(text: Union[None, str, Dict[str, Any]]) -> Dict[str, Any]:
    """``--train_extra``'s JSON object (a dict passes as is)."""
    if not text:
        return {}
    if isinstance(text, dict):
        return dict(text)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise DomainBedError(f"--train_extra must be a JSON object, got {text!r} ({exc})") from None
    if not isinstance(value, dict):
        raise DomainBedError(f"--train_extra must be a JSON object of flag: value, got {text!r}")
    return value


def extension_defaults(parser: argparse.ArgumentParser) -> Dict[str, Any]:
    """The defaults of the options the parser has beyond the spec's fields (extensions',
    launchers')."""
    known = set(spec_fields()) | {"dataset"} | set(_NOT_SPEC)
    return {a.dest: a.default for a in parser._actions
            if a.dest not in known and a.dest != "help" and a.default is not argparse.SUPPRESS}


def from_namespace(ns: argparse.Namespace, mode: str = "launch") -> SweepSpec:
    """The spec of a parsed ``sweep`` command line (``--dataset D`` = ``--datasets D``)."""
    values = vars(ns)
    fields = set(spec_fields())
    core = {k: values[k] for k in fields if k in values}
    core["datasets"] = datasets_of(ns, default=None)
    core["train_extra"] = parse_train_extra(values.get("train_extra"))
    if core.get("algorithms") is not None:
        core["algorithms"] = list(core["algorithms"])
    options = {k: v for k, v in values.items()
               if k not in fields and k not in _NOT_SPEC and k != "dataset"}
    return SweepSpec(mode=mode, options=options, **core)


def make_spec(output_dir: str, **values: Any) -> SweepSpec:
    """A spec from typed values, extensions' options filled with their defaults; an unknown
    name is an error naming the closest option."""
    defaults = extension_defaults(build_parser())
    fields = set(spec_fields()) | {"mode"}
    unknown = [k for k in values if k not in fields and k not in defaults]
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(fields | set(defaults)), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DomainBedError(f"unknown sweep option {unknown[0]!r}{hint}")
    options = dict(defaults)
    options.update({k: v for k, v in values.items() if k not in fields})
    return SweepSpec(output_dir=output_dir, options=options,
                     **{k: v for k, v in values.items() if k in fields})


def _as_spec(spec: Union[SweepSpec, argparse.Namespace]) -> SweepSpec:
    return spec if isinstance(spec, SweepSpec) else from_namespace(spec)


def train_args_list(spec: Union[SweepSpec, argparse.Namespace]) -> List[Dict[str, Any]]:
    """The training arguments of the sweep's jobs, before any job transformer."""
    spec = _as_spec(spec)
    return make_args_list(
        n_trials=spec.n_trials, dataset_names=_datasets(spec), algorithms=_algorithms(spec),
        n_hparams_from=spec.n_hparams_from, n_hparams=spec.n_hparams, steps=spec.steps,
        data_dir=spec.data_dir, task=spec.task, holdout_fraction=spec.holdout_fraction,
        single_test_envs=spec.single_test_envs, hparams=spec.hparams, seed=spec.seed,
        test_env=spec.test_env, checkpoint_freq=spec.checkpoint_freq,
        skip_model_save=spec.skip_model_save, extra_args=spec.train_extra,
        upstream_args=spec.upstream_job_ids)


def list_jobs(spec: SweepSpec, train_command: Optional[Sequence[str]] = None) -> List[Job]:
    """The sweep's jobs, after every registered job transformer (which read ``spec.mode``:
    in ``list`` and ``ids`` modes they write nothing)."""
    args_list = train_args_list(spec)
    for name in hooks.JOB_TRANSFORMERS.names():
        transform = hooks.JOB_TRANSFORMERS.get(name)
        args_list = [transform(dict(a), spec) for a in args_list]
    return make_jobs(args_list, spec.output_dir, train_command,
                     hash_paths=spec.upstream_job_ids)


def jobs_from_args(args: argparse.Namespace,
                   train_command: Optional[Sequence[str]] = None) -> List[Job]:
    """The jobs of a parsed command line (see ``list_jobs``)."""
    return list_jobs(_as_spec(args), train_command)


def check_data_dir(data_dir: Optional[str]) -> None:
    """``launch`` needs an existing --data_dir."""
    if not data_dir:
        raise DomainBedError("launch needs --data_dir: the folder that holds the datasets "
                             "(see python -m domainbed.scripts.download)")
    if not os.path.isdir(data_dir):
        raise DomainBedError(f"--data_dir {data_dir!r} does not exist or is not a folder; "
                             "pass the folder that holds the datasets (see "
                             "python -m domainbed.scripts.download)")
