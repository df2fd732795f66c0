"""Weighted averages with given coefficients: interpolation (analysis) and fusing (init)."""

import math
from typing import Sequence

import torch

from domainbed_aux.averaging.accumulator import DEFAULT_ACCUM_DTYPE, StateAccumulator
from domainbed_aux.averaging.base import (AveragingError, MemberSource, StateDict, as_members,
                                          load_member)
from domainbed_aux.averaging.checks import check_bn_options, recompute_bn_stats


def weighted_average(members: Sequence[MemberSource], lambdas: Sequence[float], *,
                     allow_live_bn: bool = False, recompute_bn=None,
                     accum_dtype: torch.dtype = DEFAULT_ACCUM_DTYPE) -> StateDict:
    """``sum_i lambdas[i] * members[i]``; the lambdas must be finite and sum to 1.

    Members are loaded one at a time. Negative coefficients (extrapolation) are allowed.
    """
    check_bn_options(allow_live_bn, recompute_bn)
    pairs = as_members(members)
    lambdas = [float(x) for x in lambdas]
    if len(lambdas) != len(pairs) or not pairs:
        raise AveragingError(f"got {len(pairs)} members and {len(lambdas)} coefficients; "
                             "give one coefficient per member (and at least one member)")
    if not all(math.isfinite(x) for x in lambdas) or abs(sum(lambdas) - 1.0) > 1e-6:
        raise AveragingError(f"coefficients {lambdas} must be finite and sum to 1 "
                             f"(they sum to {sum(lambdas)!r}); normalise them")
    acc = StateAccumulator(accum_dtype, allow_live_bn)
    for (member_id, source), lam in zip(pairs, lambdas):
        acc.add(load_member(source, member_id), member_id, weight=lam)
    # the coefficients sum to 1 up to rounding: divide by the exact sum anyway
    state = acc.mean(consume=True)
    return recompute_bn_stats(state, recompute_bn) if allow_live_bn else state


def interpolate(a: MemberSource, b: MemberSource, lam: float, **options) -> StateDict:
    """``(1 - lam) * a + lam * b`` (``lam = 0`` gives ``a``, ``lam = 1`` gives ``b``)."""
    return weighted_average([("a", a), ("b", b)], [1.0 - lam, lam], **options)
