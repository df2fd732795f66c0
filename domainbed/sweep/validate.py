"""Every problem of a sweep's options, found before a job is listed, launched or deleted.

``SWEEP_RULES`` is the table of the core options' ranges; extensions add theirs to it
(``register_sweep_rule``, e.g. ``--lp_steps_total``); launcher options are checked by
``LAUNCHER_RULES``. ``sweep_problems`` adds names (datasets, algorithms), the
``--hparams`` keys and values of every (algorithm, dataset) of the sweep (torch is imported
for that only when jobs are launched or listed: ``status`` stays torch-free) and the
``--train_extra`` flags.
"""

from typing import Any, Dict, List, Mapping, Optional

from domainbed.sweep.spec import SweepSpec
from domainbed.validation import Rule, check, closest

_COUNT = Rule("int", minimum=1)

SWEEP_RULES: Dict[str, Rule] = {
    "n_hparams_from": Rule("int", minimum=0),
    "n_hparams": _COUNT,
    "n_trials": _COUNT,
    "seed": Rule("int", minimum=0),
    "steps": Rule("int", minimum=1, nullable=True, hide_null=True),
    "checkpoint_freq": Rule("int", minimum=1, nullable=True, hide_null=True),
    "holdout_fraction": Rule("number", minimum=0, maximum=1, min_open=True, max_open=True),
    "test_env": Rule("int", minimum=-1, nullable=True, hide_null=True,
                     fix="an environment index, or -1 for none"),
}

LAUNCHER_RULES: Dict[str, Rule] = {
    "max_parallel": Rule("int", minimum=1, nullable=True, hide_null=True),
    "jobs_per_gpu": Rule("int", minimum=1, nullable=True, hide_null=True),
    "threads_per_job": Rule("int", minimum=1, nullable=True, hide_null=True),
}

# the training flags the sweep sets for every job itself: --train_extra may not set them
RESERVED_FLAGS = ("dataset", "algorithm", "test_envs", "hparams_seed", "trial_seed", "seed",
                  "output_dir", "data_dir", "hparams", "holdout_fraction")


def register_sweep_rule(option: str, rule: Rule) -> None:
    """The rule of an extension's sweep option (checked when the option is given)."""
    SWEEP_RULES[option] = rule


def _value(spec: SweepSpec, name: str) -> Any:
    try:
        return getattr(spec, name)
    except AttributeError:
        return None


def option_problems(spec: SweepSpec) -> List[str]:
    """The options against ``SWEEP_RULES``."""
    problems = []
    if not spec.output_dir:
        problems.append("--output_dir is required: the sweep folder that holds (or will "
                        "hold) the run directories")
    for name, rule in SWEEP_RULES.items():
        value = _value(spec, name)
        if value is None and rule.nullable:
            continue
        problems += check(value, rule, f"--{name}")
    space = _value(spec, "hparams_space")
    if space is not None and spec.mode != "ids":  # the registry imports torch: not for status
        from domainbed.hparams_registry import HPARAM_SPACES
        if space not in HPARAM_SPACES:
            problems.append(f"--hparams_space {space!r} is not one of "
                            f"{', '.join(HPARAM_SPACES.names())}")
    if isinstance(spec.n_hparams, int) and isinstance(spec.n_hparams_from, int) and \
            spec.n_hparams_from >= spec.n_hparams >= 1:
        problems.append(f"--n_hparams_from {spec.n_hparams_from} >= --n_hparams "
                        f"{spec.n_hparams}: the sweep would have no job; hparams seeds are "
                        "range(n_hparams_from, n_hparams)")
    return problems


def launcher_problems(values: Mapping[str, Any]) -> List[str]:
    """Launcher options (option name -> value, e.g. a parsed command line's) against
    ``LAUNCHER_RULES``."""
    problems = []
    for name, rule in LAUNCHER_RULES.items():
        value = values.get(name)
        if value is not None:
            problems += check(value, rule, f"--{name}")
    return problems


def name_problems(spec: SweepSpec) -> List[str]:
    """Unknown datasets or algorithms, each with the closest known name (torch-free for the
    core's names)."""
    from domainbed.algorithms.registry import algorithm_names
    from domainbed.datasets.registry import accepted_dataset_names
    problems = []
    for kind, given, lister in (("dataset", spec.datasets, accepted_dataset_names),
                                ("algorithm", spec.algorithms, algorithm_names)):
        if not given:
            continue
        known = lister()
        for name in given:
            if name not in known:
                near = closest(name, known)
                hint = f"did you mean {near!r}? " if near else ""
                problems.append(f"--{kind}s: {name!r} is not a known {kind}; {hint}known: "
                                f"{', '.join(known)}")
    return problems


def hparams_problems(spec: SweepSpec, with_registry: bool) -> List[str]:
    """``--hparams``: a JSON object; with the registry, its keys and values for every
    (algorithm, dataset) of the sweep, else the values of the names with a rule."""
    from domainbed.hparams_checks import HPARAM_RULES, hparam_problems, parse_overrides
    overrides, problems = parse_overrides(spec.hparams)
    if problems or not overrides:
        return problems
    if not with_registry or not spec.datasets or not spec.algorithms:
        return [p for name, value in overrides.items() if name in HPARAM_RULES
                for p in check(value, HPARAM_RULES[name], f"--hparams {name}")]
    space = _value(spec, "hparams_space") or "upstream"
    from domainbed.hparams_registry import HPARAM_SPACES
    if space not in HPARAM_SPACES:
        return []  # named by option_problems
    for dataset in spec.datasets:
        for algorithm in spec.algorithms:
            problems += hparam_problems(algorithm, dataset, overrides, space)
    return list(dict.fromkeys(problems))


def sweep_problems(spec: SweepSpec,
                   launcher_values: Optional[Mapping[str, Any]] = None) -> List[str]:
    """Every problem of the sweep's options, one line each."""
    from domainbed.training.validate import flag_problems
    problems = option_problems(spec)
    names = name_problems(spec)
    problems += names
    if not names:
        problems += hparams_problems(spec, with_registry=spec.mode != "ids")
    problems += flag_problems(spec.train_extra or {}, "--train_extra", RESERVED_FLAGS)
    if launcher_values is not None:
        problems += launcher_problems(launcher_values)
    return problems
