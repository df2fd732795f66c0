"""The values ``--hparams`` may set: one rule per hyperparameter, checked before a run starts.

A hyperparameter's type comes from its declared default (a bool stays a bool, a string a
string, a number a finite number); ``HPARAM_RULES`` adds the ranges (lr >= 0, batch_size an
integer >= 1, dropouts in [0, 1), ...). A name declared by no algorithm but read by code
(``hparams_registry.KNOWN_HPARAMS``) is checked against its rule here when it has one.
Plugins add theirs with ``register_hparam_rule``.
"""

import json
from typing import Any, Dict, Iterable, List, Mapping, Optional

from domainbed.validation import Rule, check

_POSITIVE = Rule("number", minimum=0, min_open=True)
_NON_NEGATIVE = Rule("number", minimum=0)
# a learning rate of 0 is allowed: it evaluates an initialisation without moving it
_LR = Rule("number", minimum=0, fix="a learning rate is >= 0 (0 leaves the weights as they are)")
_COUNT = Rule("int", minimum=1)
_STEPS = Rule("int", minimum=0)
_DROPOUT = Rule("number", minimum=0, maximum=1, max_open=True)
_FRACTION = Rule("number", minimum=0, maximum=1)

# name -> rule; the declared default gives the type of every other name
HPARAM_RULES: Dict[str, Rule] = {
    "lr": _LR, "lr_d": _LR, "lr_g": _LR, "linear_lr": _LR, "meta_lr": _LR, "eqrm_lr": _LR,
    "rdm_lr": _LR, "urm_discriminator_lr": _LR, "temperature": _POSITIVE,
    "weight_decay": _NON_NEGATIVE, "weight_decay_d": _NON_NEGATIVE,
    "weight_decay_g": _NON_NEGATIVE, "mmd_gamma": _NON_NEGATIVE,
    "grad_penalty": _NON_NEGATIVE, "mixup_alpha": _POSITIVE,
    "batch_size": Rule("int", minimum=1, fix="a batch size is a whole number of examples"),
    "mlp_width": _COUNT, "n_meta_test": _COUNT,
    "mlp_depth": Rule("int", minimum=2, fix="the MLP has an input and an output layer"),
    "d_steps_per_g": _COUNT, "d_steps_per_g_step": _COUNT, "iters": _COUNT,
    "swad_n_converge": _COUNT, "swad_n_tolerance": _COUNT,
    "lp_steps": _STEPS, "linear_steps": _STEPS, "ma_start_iter": _STEPS,
    "irm_penalty_anneal_iters": _STEPS, "ib_penalty_anneal_iters": _STEPS,
    "vrex_penalty_anneal_iters": _STEPS, "penalty_anneal_iters": _STEPS,
    "rdm_penalty_anneal_iters": _STEPS, "eqrm_burnin_iters": _STEPS,
    "resnet_dropout": _DROPOUT, "vit_dropout": _DROPOUT, "mlp_dropout": _DROPOUT,
    "ema": _FRACTION, "mtl_ema": _FRACTION, "beta1": _FRACTION,
    "rsc_f_drop_factor": _FRACTION, "rsc_b_drop_factor": _FRACTION,
    "eqrm_quantile": Rule("number", minimum=0, maximum=1, min_open=True, max_open=True),
    "backbone": Rule("str"), "pretrained": Rule("bool"), "pretrained_path": Rule("str"),
    "image_size": Rule("int", minimum=8), "image_channels": Rule("int", choices=(1, 3)),
    "urm_discriminator_optimizer": Rule("str", choices=("adam", "sgd")),
}


def register_hparam_rule(name: str, rule: Rule) -> None:
    """The rule of a hyperparameter a plugin declares or reads."""
    HPARAM_RULES[str(name)] = rule


def rule_of(name: str, default: Any) -> Optional[Rule]:
    """The rule of ``name``: its entry in ``HPARAM_RULES``, else the type of its default."""
    if name in HPARAM_RULES:
        return HPARAM_RULES[name]
    if isinstance(default, bool):
        return Rule("bool")
    if isinstance(default, (int, float)):
        return Rule("number")
    if isinstance(default, str):
        return Rule("str")
    return None


def value_problems(defaults: Mapping[str, Any], overrides: Mapping[str, Any],
                   where: str = "--hparams") -> List[str]:
    """One line per override whose value breaks its rule (``defaults``: the run's declared
    hyperparameters, which give each name's type)."""
    problems = []
    for name, value in overrides.items():
        rule = rule_of(name, defaults.get(name))
        if rule is not None:
            problems += check(value, rule, f"{where} {name}")
    return problems


def parse_overrides(text: Any, where: str = "--hparams") -> (Optional[dict], List[str]):
    """``(overrides, problems)`` of an ``--hparams`` value: a JSON object (text) or a dict."""
    if text is None or text == "":
        return {}, []
    if isinstance(text, dict):
        return dict(text), []
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:
        return None, [f"{where} is not valid JSON ({exc}); example: "
                      "--hparams '{\"lr\": 1e-4}'"]
    if not isinstance(value, dict):
        return None, [f"{where} must be a JSON object, e.g. '{{\"lr\": 1e-4}}', got {text!r}"]
    return value, []


def hparam_problems(algorithm: str, dataset: str, overrides: Mapping[str, Any],
                    space: str = "upstream", where: str = "--hparams",
                    extra_known: Iterable[str] = ()) -> List[str]:
    """Every problem of ``overrides`` for a run of ``algorithm`` on ``dataset`` in ``space``:
    unknown names (with the closest known one) and bad values. Imports the algorithms."""
    from domainbed import hparams_registry
    problems = hparams_registry.unknown_hparams(algorithm, dataset, overrides, extra_known,
                                                space, where)
    defaults = hparams_registry.default_hparams(algorithm, dataset, space)
    return problems + value_problems(defaults, overrides, where)
