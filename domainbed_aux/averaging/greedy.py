"""Greedy soup: add runs in order of ID-validation accuracy while the average does not degrade.

Two acceptance rules, both offered:

- ``"paper"`` (the ratatouille/DiWA released code): keep a candidate unless the pooled
  ID-validation accuracy of the average becomes strictly lower (ties are kept);
- ``"strict"`` (model soups): keep a candidate only on a strict improvement.
"""

import math
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

import torch

from domainbed_aux.averaging.accumulator import DEFAULT_ACCUM_DTYPE, StateAccumulator
from domainbed_aux.averaging.base import (AveragingError, Members, SoupResult, StateDict,
                                          as_members, load_member)
from domainbed_aux.averaging.checks import check_bn_options, recompute_bn_stats

GREEDY_RULES = ("paper", "strict")
ValAcc = Union[Mapping[str, float], Callable[[str], float]]


def _accepts(rule: str, candidate_acc: float, soup_acc: float) -> bool:
    return candidate_acc >= soup_acc if rule == "paper" else candidate_acc > soup_acc


def _val_accs(val_acc_of_member: ValAcc, member_ids) -> Dict[str, float]:
    accs = {}
    for member_id in member_ids:
        try:
            acc = (val_acc_of_member(member_id) if callable(val_acc_of_member)
                   else val_acc_of_member[member_id])
        except KeyError:
            raise AveragingError(f"no ID-validation accuracy for member {member_id!r}; "
                                 "val_acc_of_member must cover every member") from None
        if acc is None or not math.isfinite(float(acc)):
            raise AveragingError(f"member {member_id!r} has ID-validation accuracy {acc!r}; "
                                 "a finite number is needed to rank it")
        accs[member_id] = float(acc)
    return accs


def greedy_soup(members: Members, val_acc_of_member: ValAcc,
                evaluate_average: Callable[[StateDict], float], rule: str = "paper", *,
                allow_live_bn: bool = False, recompute_bn=None,
                accum_dtype: torch.dtype = DEFAULT_ACCUM_DTYPE,
                tie_order: Optional[Sequence[Any]] = None) -> SoupResult:
    """Greedy selection of members on ID-validation accuracy.

    Members are ranked by ``val_acc_of_member`` (a mapping or function of the member id),
    descending, ties broken by their position in ``tie_order`` (every member id once) or,
    without it, by member id ascending. The first is always kept; each next
    candidate is tried as ``(sum + member) / (n + 1)`` (no earlier member is reloaded;
    each member is loaded once), scored by ``evaluate_average(state_dict)`` and kept
    according to ``rule``. The result lists the kept ids in order, the final average, its
    accuracy and a trace of every candidate.
    """
    if rule not in GREEDY_RULES:
        raise AveragingError(f"unknown greedy rule {rule!r}; known: {', '.join(GREEDY_RULES)} "
                             "('paper' keeps ties, 'strict' needs an improvement)")
    check_bn_options(allow_live_bn, recompute_bn)
    pairs = as_members(members)
    if not pairs:
        raise AveragingError("greedy soup of zero members: give at least one run")
    accs = _val_accs(val_acc_of_member, [m for m, _ in pairs])
    tie = lambda member_id: member_id  # noqa: E731
    if tie_order is not None:
        position = {member_id: i for i, member_id in enumerate(tie_order)}
        if set(position) != {m for m, _ in pairs} or len(position) != len(tie_order):
            raise AveragingError("tie_order must list every member id once")
        tie = position.__getitem__
    ranked = sorted(pairs, key=lambda pair: (-accs[pair[0]], tie(pair[0])))

    def score(state: StateDict) -> float:
        if allow_live_bn:
            state = recompute_bn_stats(state, recompute_bn)
        return float(evaluate_average(state))

    acc = StateAccumulator(accum_dtype, allow_live_bn)
    kept, trace, soup_acc = [], [], -math.inf
    for member_id, source in ranked:
        state = load_member(source, member_id)
        if acc.count == 0:
            acc.add(state, member_id)
            candidate_acc, keep = score(acc.mean()), True
        else:
            candidate_acc = score(acc.mean_with(state, member_id))
            keep = _accepts(rule, candidate_acc, soup_acc)
            if keep:
                acc.add(state, member_id)
        del state  # the next member is loaded only after this one is released
        if keep:
            kept.append(member_id)
            soup_acc = candidate_acc
        trace.append({"member": member_id, "val_acc": accs[member_id],
                      "soup_acc": candidate_acc, "kept": keep, "n_in_soup": len(kept)})
    final = acc.mean(consume=True)
    if allow_live_bn:
        final = recompute_bn_stats(final, recompute_bn)
    return SoupResult(rule="greedy" if rule == "paper" else "greedy_strict", state_dict=final,
                      members=kept, n_candidates=len(pairs), trace=trace, val_acc=soup_acc,
                      bn_recomputed=allow_live_bn)

