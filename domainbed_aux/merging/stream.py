"""Members opened one at a time, checked against the first, and the batch-norm policy.

:class:`MemberSet` sorts the keys of a merge (by their canonical name: an alias is merged
once and shares its tensor in the result):

- ``merged``: floating tensors the rule combines;
- ``uniform``: floating tensors averaged uniformly whatever the rule: batch-norm statistics
  of runs with live batch norm (re-estimated afterwards by ``recompute_bn``, the policy of
  :mod:`domainbed_aux.averaging.checks`), and, for rules built on task vectors, tensors
  that theta_0 does not hold;
- ``fixed``: tensors that are not averaged: integer tensors and frozen batch-norm statistics
  (identical in every member: checked) and the counter ``num_batches_tracked`` (the first
  member's).
"""

from typing import Dict, Iterator, List, Mapping, Optional, Tuple

import torch

from domainbed_aux.averaging.base import AveragingError, StateDict
from domainbed_aux.averaging.checks import (MemberSpec, check_bn_options, is_averaged,
                                            is_bn_counter, is_bn_stat, recompute_bn_stats)
from domainbed_aux.merging.contract import MergeInputs
from domainbed_aux.merging.sources import BaseWeights, Weights, open_weights


class MemberSet:
    """The members of one merge (see the module docstring); ``with_base`` opens theta_0."""

    def __init__(self, inputs: MergeInputs, with_base: bool = False):
        check_bn_options(inputs.allow_live_bn, inputs.recompute_bn)
        if not inputs.members:
            raise AveragingError("a merge of zero members: give at least one run")
        self.inputs = inputs
        self.members = list(inputs.members)
        first_id, first_source = self.members[0]
        first = open_weights(first_source, first_id)
        try:
            self.keys: List[str] = first.keys()
            self.layout = first.layout()
            self.canonical: Dict[str, str] = {k: first.canonical(k) for k in self.keys}
            self.spec = MemberSpec.from_layout(self.layout, first.get, first_id,
                                               inputs.allow_live_bn)
            self.counters = {k: first.get(k).clone() for k in self.keys
                             if self.canonical[k] == k and is_bn_counter(k)}
        finally:
            first.close()
        self.base: Optional[BaseWeights] = None
        if with_base:
            if inputs.theta_0 is None:
                raise AveragingError("this rule needs theta_0 (the members' common ancestor)")
            self.base = BaseWeights(inputs.theta_0, self.layout)
        self.merged, self.uniform, self.fixed = [], [], []
        probe = lambda key: torch.empty(0, dtype=self.layout[key][1])  # noqa: E731
        for key in self.keys:
            if self.canonical[key] != key:
                continue  # an alias: merged with the name it stands for
            if not is_averaged(key, probe(key), inputs.allow_live_bn):
                self.fixed.append(key)
            elif is_bn_stat(key) or (self.base is not None and not self.base.has(key)):
                self.uniform.append(key)
            else:
                self.merged.append(key)
        self._uniform_sums: Dict[str, torch.Tensor] = {}
        self._uniform_count = 0

    def __len__(self) -> int:
        return len(self.members)

    @property
    def ids(self) -> List[str]:
        return [m for m, _ in self.members]

    def acc_dtype(self, key: str) -> torch.dtype:
        return torch.promote_types(self.layout[key][1], self.inputs.accum_dtype)

    def open(self, index: int) -> Weights:
        """Member ``index``, opened and checked against the first (close it after use)."""
        member_id, source = self.members[index]
        weights = open_weights(source, member_id)
        try:
            layout = weights.layout()
            self.spec.check_layout(layout, member_id)
            for key in self.spec.fixed:
                self.spec.check_fixed(key, weights.get(key), member_id)
        except Exception:
            weights.close()
            raise
        if self.inputs.on_open is not None:
            self.inputs.on_open(member_id)
        return weights

    def each(self) -> Iterator[Tuple[int, str, Weights]]:
        """``(index, member_id, weights)`` for every member, one open at a time."""
        for index, (member_id, _) in enumerate(self.members):
            weights = self.open(index)
            try:
                yield index, member_id, weights
            finally:
                weights.close()

    def theta(self, weights: Weights, key: str) -> torch.Tensor:
        """A member's tensor in the accumulation dtype (a fresh copy)."""
        return weights.get(key).to(self.acc_dtype(key), copy=True)

    def base_of(self, key: str) -> torch.Tensor:
        return self.base.get(key).to(self.acc_dtype(key))

    def tau(self, weights: Weights, key: str) -> torch.Tensor:
        """The task vector ``theta_i - theta_0`` of one key (a fresh tensor)."""
        return self.theta(weights, key).sub_(self.base_of(key))

    # -- tensors every rule treats the same ----------------------------------------------
    def add_uniform(self, weights: Weights) -> None:
        """Add a member's ``uniform`` tensors (call it in exactly one pass)."""
        for key in self.uniform:
            value = weights.get(key)
            if key in self._uniform_sums:
                self._uniform_sums[key].add_(value.to(self._uniform_sums[key].dtype))
            else:
                self._uniform_sums[key] = value.to(self.acc_dtype(key), copy=True)
        self._uniform_count += 1

    def assemble(self, merged: Mapping[str, torch.Tensor]) -> StateDict:
        """The result in the first member's key order and dtypes: ``merged`` values (by
        canonical key), uniform means, fixed tensors; aliases share their tensor; with live
        batch norm, the statistics re-estimated by ``recompute_bn``."""
        values: Dict[str, torch.Tensor] = {}
        for key in self.merged:
            values[key] = merged[key].to(self.layout[key][1])
        if self.uniform:
            if self._uniform_count != len(self.members):
                raise AveragingError("internal: uniform tensors were not added for every member")
            for key in self.uniform:
                values[key] = (self._uniform_sums[key] / self._uniform_count).to(
                    self.layout[key][1])
        for key in self.fixed:
            values[key] = self.spec.fixed[key].clone() if key in self.spec.fixed \
                else self.counters[key].clone()
        state = {key: values[self.canonical[key]] for key in self.keys}
        if self.inputs.allow_live_bn:
            state = recompute_bn_stats(state, self.inputs.recompute_bn)
        return state

    def close(self) -> None:
        if self.base is not None:
            self.base.close()


def numel(layout_entry) -> int:
    n = 1
    for size in layout_entry[0]:
        n *= size
    return n
