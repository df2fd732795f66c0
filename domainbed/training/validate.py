"""Every problem of a training run's arguments, found before the run writes anything.

``TRAIN_ARG_RULES`` is the table of the arguments' ranges; ``config_problems`` adds the
checks that need the registries (dataset and algorithm names, test environments in range,
``--hparams`` keys and values, the ``--init_from`` file, the output folder).
"""

import os
from typing import Any, Dict, List, Mapping, Sequence

from domainbed.training.config import TrainConfig
from domainbed.validation import Rule, check, closest, raise_if_any, unknown_key

_FRACTION_OPEN = Rule("number", minimum=0, maximum=1, min_open=True, max_open=True)

TRAIN_ARG_RULES: Dict[str, Rule] = {
    "steps": Rule("int", minimum=1, nullable=True, hide_null=True,
                  fix="give the number of training steps, e.g. --steps 5001"),
    "checkpoint_freq": Rule("int", minimum=1, nullable=True, hide_null=True,
                            fix="evaluate every N >= 1 steps, e.g. --checkpoint_freq 100"),
    "hparams_seed": Rule("int", minimum=0, fix="0 = default hyperparameters"),
    "trial_seed": Rule("int", minimum=0),
    "seed": Rule("int", minimum=0, maximum=2 ** 32 - 1, fix="numpy seeds are 32-bit"),
    "holdout_fraction": Rule("number", minimum=0, maximum=1, min_open=True, max_open=True,
                             fix="the fraction of each domain held out for validation, "
                                 "e.g. 0.2"),
    "uda_holdout_fraction": Rule("number", minimum=0, maximum=1, max_open=True),
    "num_workers": Rule("int", minimum=0, nullable=True, hide_null=True),
    "test_envs": Rule("list", items=Rule("int", minimum=-1), non_empty=True,
                      fix="environment indices, or -1 alone for none"),
    "data_dir": Rule("str"),
    "output_dir": Rule("str"),
    "init_from": Rule("str", nullable=True, hide_null=True),
}


def _flag(name: str) -> str:
    return f"--{name}"


def argument_problems(config: TrainConfig) -> List[str]:
    """The arguments against ``TRAIN_ARG_RULES`` (no registry needed)."""
    from domainbed.hparams_registry import HPARAM_SPACES
    problems = []
    for name, rule in TRAIN_ARG_RULES.items():
        value = getattr(config, name)
        if value is not None or not rule.nullable:  # None: the flag was not given
            problems += check(value, rule, _flag(name))
    if config.hparams_space not in HPARAM_SPACES:
        problems.append(f"--hparams_space {config.hparams_space!r} is not one of "
                        f"{', '.join(HPARAM_SPACES.names())}")
    envs = config.test_envs if isinstance(config.test_envs, list) else []
    if -1 in envs and len(envs) > 1:
        problems.append(f"--test_envs {' '.join(map(str, envs))}: -1 (no test environment) "
                        "cannot be combined with other environments")
    if len(set(map(str, envs))) < len(envs):
        problems.append(f"--test_envs {' '.join(map(str, envs))} names an environment twice")
    if config.task == "domain_adaptation" and not config.uda_holdout_fraction:
        problems.append("--task domain_adaptation needs --uda_holdout_fraction > 0")
    return problems


def _name_problem(kind: str, name: str, known: List[str]) -> str:
    near = closest(name, known)
    hint = f"did you mean {near!r}? " if near else ""
    return f"--{kind} {name!r} is not a known {kind}; {hint}known: {', '.join(known)}"


def name_problems(config: TrainConfig) -> List[str]:
    """Unknown dataset or algorithm names (the registries' indexes: nothing imported); a
    malformed ``folder:NAME`` is named with the accepted form."""
    from domainbed.algorithms.registry import algorithm_names
    from domainbed.datasets.registry import (accepted_dataset_names, is_folder_dataset,
                                             split_dataset_root)
    problems = []
    datasets = accepted_dataset_names()
    if is_folder_dataset(config.dataset):  # the user's folder under its own name
        try:
            split_dataset_root(config.dataset)
        except ValueError as e:
            problems.append(f"--dataset: {e}")
    elif config.dataset not in datasets:
        problems.append(_name_problem("dataset", config.dataset, list(datasets)))
    algorithms = algorithm_names()
    if config.algorithm not in algorithms:
        problems.append(_name_problem("algorithm", config.algorithm, algorithms))
    return problems


def test_env_problems(config: TrainConfig) -> List[str]:
    """Test environments out of the dataset's range, when the count is known without data."""
    from domainbed.datasets.registry import known_environment_count
    n_envs = known_environment_count(config.dataset)
    if n_envs is None:
        return []
    return [f"--test_envs {env} is out of range: {config.dataset} has {n_envs} environments "
            f"(0..{n_envs - 1}); use -1 for no test environment"
            for env in config.test_envs if isinstance(env, int) and env >= n_envs]


def path_problems(config: TrainConfig) -> List[str]:
    """An ``--init_from`` that is no file; an ``--output_dir`` that is a file or cannot be
    created."""
    problems = []
    if config.init_from:
        if os.path.isdir(config.init_from):
            problems.append(f"--init_from {config.init_from}: is a folder; give a weight file "
                            "(e.g. RUN/model.safetensors)")
        elif not os.path.isfile(config.init_from):
            problems.append(f"--init_from {config.init_from}: no such weight file; check the "
                            "path (a sweep writes its init files before launching)")
    out = config.output_dir
    if os.path.exists(out) and not os.path.isdir(out):
        problems.append(f"--output_dir {out}: is a file, not a folder; give another path")
    else:
        existing = os.path.abspath(out)
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            problems.append(f"--output_dir {out}: {existing} is a file, not a folder; give "
                            "another path")
        elif not os.access(existing, os.W_OK | os.X_OK):
            problems.append(f"--output_dir {out}: {existing} is not writable; give a folder "
                            "you can write to")
    return problems


def hparams_problems(config: TrainConfig) -> List[str]:
    """``--hparams``: valid JSON object, known names, values in range (needs known names)."""
    from domainbed.hparams_checks import hparam_problems, parse_overrides
    overrides, problems = parse_overrides(config.hparams)
    if problems or not overrides:
        return problems
    return hparam_problems(config.algorithm, config.dataset, overrides, config.hparams_space)


def flag_problems(flags: Mapping[str, Any], where: str,
                  reserved: Sequence[str] = ()) -> List[str]:
    """Extra training flags for every job of a sweep (``--train_extra``, a recipe's
    ``train_extra``): flags that exist, that the sweep does not set itself (``reserved``),
    with values of their type and range."""
    from domainbed.training import config as config_module
    fields = [f for f in TrainConfig.field_names() if f not in reserved]
    defaults = TrainConfig.__dataclass_fields__
    choices = {"task": config_module.TASKS, "init_part": config_module.INIT_PARTS,
               "precision": config_module.PRECISIONS}
    problems = []
    for key, value in flags.items():
        if key in reserved:
            problems.append(f"{where}.{key}: set by the sweep (or recipe) itself for every "
                            "job; use its own option instead")
        elif key not in fields:
            problems.append(unknown_key(where, key, fields))
        elif key in TRAIN_ARG_RULES:
            problems += check(value, TRAIN_ARG_RULES[key], f"{where}.{key}")
        elif key in choices:
            problems += check(value, Rule("str", choices=tuple(choices[key])), f"{where}.{key}")
        elif isinstance(defaults[key].default, bool):
            problems += check(value, Rule("bool"), f"{where}.{key}")
    return problems


def config_problems(config: TrainConfig) -> List[str]:
    """Every problem of ``config``, one line each, in the order of the flags."""
    problems = argument_problems(config)
    names = name_problems(config)
    problems += names
    if not names:
        problems += test_env_problems(config)
        if not any(p.startswith("--hparams_space") for p in problems):
            problems += hparams_problems(config)
    return problems + path_problems(config)


def validate_config(config: TrainConfig) -> None:
    """Raise ``ValidationError`` (every problem) when ``config`` cannot run as given."""
    raise_if_any(config_problems(config))
