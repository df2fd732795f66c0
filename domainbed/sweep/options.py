"""A sweep's options and the job list they describe, from typed values.

The options are the fields of ``SweepSpec`` and the options dataclasses of launchers and
extensions (``hooks.SWEEP_ARGUMENTS``), whose defaults are read without any parser;
``make_spec`` builds a spec from typed values, ``list_jobs`` its jobs. The ``sweep`` command
line (its parser, generated from these declarations) is ``domainbed.scripts.sweep_args``.
"""

import difflib
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Union

from domainbed.errors import DomainBedError
from domainbed.lib.options import option_defaults
from domainbed.sweep import hooks
from domainbed.sweep.jobs import Job, make_args_list, make_jobs
from domainbed.sweep.spec import SweepSpec, spec_fields

# options of the command line that describe neither the jobs nor an extension's planning
NOT_SPEC = ("command", "skip_confirmation", "command_launcher", "stage", "only")


def load_extensions():
    """The launcher registry, once the sweep's plugins (options and hooks) are loaded; models
    load when a job needs them."""
    from domainbed.command_launchers import REGISTRY
    from domainbed.plugins import SWEEP_PLUGINS, load_plugins
    load_plugins(SWEEP_PLUGINS)
    return REGISTRY


def extension_options() -> List[type]:
    """The options dataclasses the extensions registered (``hooks.SWEEP_ARGUMENTS``), in
    registration order."""
    load_extensions()
    return [hooks.SWEEP_ARGUMENTS.get(name) for name in hooks.SWEEP_ARGUMENTS.names()]


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


def extension_defaults() -> Dict[str, Any]:
    """The defaults of the options beyond the spec's fields (launchers', extensions'), read
    from their options dataclasses: no parser is built."""
    registry = load_extensions()
    known = set(spec_fields()) | {"dataset"} | set(NOT_SPEC)
    defaults: Dict[str, Any] = {}
    for name in registry.names():
        launcher_defaults = getattr(registry.get(name), "option_defaults", None)
        for key, value in (launcher_defaults() if launcher_defaults else {}).items():
            defaults.setdefault(key, value)
    for options_class in extension_options():
        for key, value in option_defaults(options_class).items():
            defaults.setdefault(key, value)
    return {k: v for k, v in defaults.items() if k not in known}


def make_spec(output_dir: str, **values: Any) -> SweepSpec:
    """A spec from typed values, extensions' options filled with their defaults; an unknown
    name is an error naming the closest option."""
    defaults = extension_defaults()
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


def train_args_list(spec: SweepSpec) -> List[Dict[str, Any]]:
    """The training arguments of the sweep's jobs, before any job transformer."""
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


def check_data_dir(data_dir: Optional[str]) -> None:
    """``launch`` needs an existing --data_dir."""
    if not data_dir:
        raise DomainBedError("launch needs --data_dir: the folder that holds the datasets "
                             "(see python -m domainbed.scripts.download)")
    if not os.path.isdir(data_dir):
        raise DomainBedError(f"--data_dir {data_dir!r} does not exist or is not a folder; "
                             "pass the folder that holds the datasets (see "
                             "python -m domainbed.scripts.download)")
