"""Uniform soup (mean of all members) and its dagger variant (all trial seeds together)."""

from typing import Any, Mapping

import torch

from domainbed_aux.averaging.accumulator import DEFAULT_ACCUM_DTYPE, StateAccumulator
from domainbed_aux.averaging.base import (AveragingError, Members, SoupResult, as_members,
                                          load_member)
from domainbed_aux.averaging.checks import check_bn_options, recompute_bn_stats


def uniform_soup(members: Members, *, allow_live_bn: bool = False, recompute_bn=None,
                 accum_dtype: torch.dtype = DEFAULT_ACCUM_DTYPE) -> SoupResult:
    """The arithmetic mean of all members' weights.

    Members are loaded one at a time (each once); memory is one running sum plus one
    member. With ``allow_live_bn`` the averaged batch-norm statistics are replaced by
    ``recompute_bn(state)`` and the result says so.
    """
    check_bn_options(allow_live_bn, recompute_bn)
    pairs = as_members(members)
    if not pairs:
        raise AveragingError("uniform soup of zero members: give at least one run")
    acc = StateAccumulator(accum_dtype, allow_live_bn)
    for member_id, source in pairs:
        acc.add(load_member(source, member_id), member_id)
    state = acc.mean(consume=True)
    if allow_live_bn:
        state = recompute_bn_stats(state, recompute_bn)
    return SoupResult(rule="uniform", state_dict=state, members=[m for m, _ in pairs],
                      n_candidates=len(pairs), bn_recomputed=allow_live_bn)


def dagger_soup(runs_by_trial: Mapping[Any, Members], **options: Any) -> SoupResult:
    """Uniform soup over the runs of every trial seed (the paper's dagger rows).

    ``runs_by_trial`` maps a trial seed to its members; member ids become ``"<trial>/<id>"``.
    """
    pairs = []
    for trial, members in runs_by_trial.items():
        pairs.extend((f"{trial}/{member_id}", source) for member_id, source in as_members(members))
    result = uniform_soup(pairs, **options)
    result.rule = "dagger"
    return result

