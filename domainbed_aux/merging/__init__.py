"""Merge rules: every way of turning several fine-tunings into one model, by name.

A rule is a :class:`~.contract.MergeRule` registered with ``@register_rule`` in a file of its
own under ``rules/`` (scanned on first use: a new rule is a new file). It declares what it
needs (theta_0, training-domain data, member accuracies), its hyperparameters with their
defaults and grids, whether it streams, and its memory bound; :mod:`.selection` chooses
hyperparameters and members on ID validation only; :mod:`.premerge` checks members before
they are merged. The arithmetic of uniform and greedy soups stays in
:mod:`domainbed_aux.averaging`.

``select_weights(name, members, val_acc_of_member, evaluate_average, ...)`` runs a rule on
members (paths, state dicts, modules or loaders) as the soups of runs do.
"""

from typing import Any, Mapping, Optional

from domainbed_aux.averaging.base import Members, SoupResult, as_members
from domainbed_aux.merging.contract import (NEEDS, HParam, InMemoryData, MergeInputs,
                                            MergeRule, TrainingData)
from domainbed_aux.merging.registry import (MERGE_RULES, get_rule, register_rule, rule_names,
                                            unregister_rule)
from domainbed_aux.merging.selection import choose_hparams, greedy_merge, merge_with


def _pooled_members(members):
    """A mapping trial -> members becomes ``[("<trial>/<id>", source)]`` (dagger)."""
    if isinstance(members, Mapping) and members and all(
            isinstance(v, (list, tuple, Mapping)) for v in members.values()):
        return [(f"{trial}/{member_id}", source) for trial, group in members.items()
                for member_id, source in as_members(group)]
    return as_members(members)


def select_weights(name: str, members: Members, val_acc_of_member=None, evaluate_average=None,
                   *, theta_0=None, data: Optional[TrainingData] = None,
                   hparams: Optional[Mapping[str, Any]] = None, greedy: Optional[str] = None,
                   **options: Any) -> SoupResult:
    """Run the rule ``name`` on ``members``: hyperparameters not in ``hparams`` are chosen by
    ``evaluate_average`` (ID validation) over the rule's grid; ``greedy`` ("paper" or
    "strict") selects members greedily over the rule. ``options``: ``allow_live_bn``,
    ``recompute_bn``, ``accum_dtype``, ``tie_order``, ``seed``."""
    rule = get_rule(name)
    pairs = _pooled_members(members) if rule.pooled else as_members(members)
    inputs = MergeInputs(pairs, theta_0=theta_0, val_acc_of_member=val_acc_of_member,
                         evaluate=evaluate_average, data=data, **options)
    return merge_with(rule, inputs, hparams, greedy)


__all__ = ["NEEDS", "HParam", "InMemoryData", "MergeInputs", "MergeRule", "TrainingData",
           "MERGE_RULES", "get_rule", "register_rule", "rule_names", "unregister_rule",
           "choose_hparams", "greedy_merge", "merge_with", "select_weights"]
