"""A running (weighted) sum of state dicts: memory stays one accumulator, whatever M is.

Floating tensors are summed in ``accum_dtype``, float32 by default (never below the
members' own precision): for 60 float32 members of scale 0.05 the mean then differs from
an exact float64 mean by at most ~1.4e-8 (a few float32 ulps), and the peak memory of a
uniform soup stays ~2.1x one model (benchmarks/bench_averaging_memory.py). float64 gives
an exact-to-rounding mean for ~3.2-3.8x one model. The mean is cast back to the first
member's dtype. Tensors that are not averaged (see :mod:`.checks`) are taken from the
first member after checking that later members agree.
"""

from typing import Dict, Mapping, Optional

import torch

from domainbed_aux.averaging.base import AveragingError, StateDict
from domainbed_aux.averaging.checks import MemberSpec, is_averaged


DEFAULT_ACCUM_DTYPE = torch.float32


class StateAccumulator:
    """``add`` members one at a time; ``mean`` gives ``sum_i w_i theta_i / sum_i w_i``."""

    def __init__(self, accum_dtype: torch.dtype = DEFAULT_ACCUM_DTYPE,
                 allow_live_bn: bool = False):
        if not accum_dtype.is_floating_point:
            raise AveragingError(f"accum_dtype must be a floating dtype, got {accum_dtype}")
        self.accum_dtype = accum_dtype
        self.allow_live_bn = allow_live_bn
        self.spec: Optional[MemberSpec] = None
        self.count = 0
        self.total_weight = 0.0
        self._sums: Dict[str, torch.Tensor] = {}
        self._kept: Dict[str, torch.Tensor] = {}   # not averaged: the first member's value
        self._dtypes: Dict[str, torch.dtype] = {}

    def add(self, state: Mapping[str, torch.Tensor], member_id: Optional[str] = None,
            weight: float = 1.0) -> None:
        """Add ``weight * state`` to the sum (the caller may drop ``state`` afterwards)."""
        member_id = member_id or f"member{self.count}"
        if self.spec is None:
            self.spec = MemberSpec(state, member_id, self.allow_live_bn)
            for key, value in state.items():
                self._dtypes[key] = value.dtype
                if is_averaged(key, value, self.allow_live_bn):
                    dtype = torch.promote_types(value.dtype, self.accum_dtype)
                    self._sums[key] = value.detach().to(dtype, copy=True)
                    if weight != 1.0:
                        self._sums[key].mul_(weight)
                else:  # checked-identical values are already copied by the spec
                    self._kept[key] = self.spec.fixed.get(key, value.detach().clone())
        else:
            self.spec.check(state, member_id)
            with torch.no_grad():
                for key, total in self._sums.items():
                    total.add_(state[key].to(total.device), alpha=weight)
        self.count += 1
        self.total_weight += weight

    def _finish(self, key: str, total: torch.Tensor, denominator: float) -> torch.Tensor:
        return (total / denominator).to(self._dtypes[key])

    def mean(self, consume: bool = False) -> StateDict:
        """The weighted mean, keys in the first member's order.

        ``consume=True`` frees each running sum as soon as its mean is made (lowest peak
        memory); the accumulator cannot be used afterwards.
        """
        self._require_members()
        out = {}
        for key in self._dtypes:
            if key in self._kept:
                out[key] = self._kept[key] if consume else self._kept[key].clone()
            else:
                total = self._sums.pop(key) if consume else self._sums[key]
                out[key] = self._finish(key, total, self.total_weight)
                del total
        if consume:
            self._kept, self.spec = {}, None
        return out

    def mean_with(self, state: Mapping[str, torch.Tensor], member_id: Optional[str] = None,
                  weight: float = 1.0) -> StateDict:
        """The mean if ``state`` were added, without adding it (greedy candidates)."""
        self._require_members()
        member_id = member_id or f"member{self.count}"
        self.spec.check(state, member_id)
        denominator = self.total_weight + weight
        out = {}
        with torch.no_grad():
            for key in self._dtypes:
                if key in self._kept:
                    out[key] = self._kept[key].clone()
                else:
                    total = self._sums[key]
                    candidate = torch.add(total, state[key].to(total.device, total.dtype),
                                          alpha=weight)
                    out[key] = self._finish(key, candidate, denominator)
        return out

    def _require_members(self) -> None:
        if self.spec is None or self.count == 0:
            raise AveragingError("no member was added (or the mean was already consumed)")
        if self.total_weight == 0:
            raise AveragingError("the members' weights sum to 0; the mean is undefined")
