"""Can these weights be averaged? Every member is compared with the first one.

Members must have the same keys, the same shapes (hence the same number of classes) and
the same kind of dtype (floating, integer, bool). Floating tensors of different precision
are allowed; the average takes the first member's dtype. Tensors that are not averaged:

- integer and bool tensors must be identical, except the batch-norm counter
  ``num_batches_tracked``, which only counts updates and is taken from the first member;
- batch-norm statistics (``running_mean`` / ``running_var``) must be identical: the core
  freezes batch norm, so they never change during fine-tuning. Runs trained with live batch
  norm have different statistics; averaging them needs ``allow_live_bn=True`` and a caller
  function that re-estimates the statistics on training data. They are never silently
  taken from one member.
"""

from typing import Dict, Mapping, Optional, Tuple

import torch

from domainbed_aux.averaging.base import AveragingError

BN_STAT_SUFFIXES = ("running_mean", "running_var")
BN_COUNTER_SUFFIX = "num_batches_tracked"
# prefixes of the classification head in our models, upstream's and torchvision's
_HEAD_PARENTS = ("classifier", "network.1", "fc", "head")


def dtype_kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    if dtype.is_floating_point:
        return "floating"
    return "integer"


def is_bn_stat(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in BN_STAT_SUFFIXES


def is_bn_counter(key: str) -> bool:
    return key.rsplit(".", 1)[-1] == BN_COUNTER_SUFFIX


def is_head_param(key: str) -> bool:
    """A weight or bias of the classification head (its first dimension = class count)."""
    parent, _, leaf = key.rpartition(".")
    return leaf in ("weight", "bias") and (parent in _HEAD_PARENTS or parent.endswith(
        tuple("." + p for p in _HEAD_PARENTS)))


def is_averaged(key: str, tensor: torch.Tensor, allow_live_bn: bool) -> bool:
    """Whether ``key`` is averaged (else it is checked identical or taken from the first)."""
    if dtype_kind(tensor.dtype) not in ("floating", "complex"):
        return False
    return allow_live_bn or not is_bn_stat(key)


def _keys_text(keys) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
    return ", ".join(repr(k) for k in keys[:5]) + more


class MemberSpec:
    """The reference every member must match: the first member's layout and fixed buffers."""

    def __init__(self, state: Mapping[str, torch.Tensor], member_id: str,
                 allow_live_bn: bool = False):
        self.member_id = member_id
        self.allow_live_bn = allow_live_bn
        self.layout: Dict[str, Tuple[Tuple[int, ...], torch.dtype]] = {
            k: (tuple(v.shape), v.dtype) for k, v in state.items()}
        # values that must be the same in every member (integer tensors, frozen BN stats)
        self.fixed: Dict[str, torch.Tensor] = {
            k: v.detach().clone() for k, v in state.items()
            if not is_averaged(k, v, allow_live_bn) and not is_bn_counter(k)}

    @classmethod
    def from_layout(cls, layout: Mapping[str, Tuple[Tuple[int, ...], torch.dtype]],
                    read, member_id: str, allow_live_bn: bool = False) -> "MemberSpec":
        """The spec of a member known by its layout (``key -> (shape, dtype)``), reading
        only the tensors that must be identical in every member with ``read(key)``."""
        spec = cls.__new__(cls)
        spec.member_id = member_id
        spec.allow_live_bn = allow_live_bn
        spec.layout = {k: (tuple(shape), dtype) for k, (shape, dtype) in layout.items()}
        spec.fixed = {k: read(k).detach().clone() for k in spec.fixed_keys()}
        return spec

    def fixed_keys(self):
        """The keys whose values must be identical in every member (see the module doc)."""
        probe = lambda dtype: torch.empty(0, dtype=dtype)  # noqa: E731
        return [k for k, (_, dtype) in self.layout.items()
                if not is_averaged(k, probe(dtype), self.allow_live_bn) and not is_bn_counter(k)]

    def check(self, state: Mapping[str, torch.Tensor], member_id: str) -> None:
        """Raise :class:`AveragingError` naming ``member_id`` and the first bad key."""
        self.check_layout({k: (tuple(v.shape), v.dtype) for k, v in state.items()}, member_id)
        for key in self.fixed:
            self.check_fixed(key, state[key], member_id)

    def check_layout(self, layout: Mapping[str, Tuple[Tuple[int, ...], torch.dtype]],
                     member_id: str) -> None:
        """Keys, shapes and dtype kinds of a member (``key -> (shape, dtype)``)."""
        ref = self.member_id
        missing = self.layout.keys() - layout.keys()
        extra = layout.keys() - self.layout.keys()
        if missing or extra:
            parts = ([f"missing {_keys_text(missing)}"] if missing else []) + (
                [f"unexpected {_keys_text(extra)}"] if extra else [])
            raise AveragingError(
                f"member {member_id!r} has other keys than {ref!r}: {'; '.join(parts)}. "
                "Only runs of the same algorithm and architecture can be averaged")
        for key, (shape, dtype) in self.layout.items():
            value_shape, value_dtype = layout[key]
            value_shape = tuple(value_shape)
            if value_shape != shape:
                if is_head_param(key) and len(shape) == len(value_shape) and \
                        value_shape[1:] == shape[1:]:
                    raise AveragingError(
                        f"member {member_id!r} predicts {value_shape[0]} classes but {ref!r} "
                        f"predicts {shape[0]} (key {key!r}); average only runs trained on "
                        "the same target dataset")
                raise AveragingError(
                    f"member {member_id!r}: key {key!r} has shape {value_shape} but "
                    f"{ref!r} has {shape}; only runs of the same architecture can be averaged")
            if dtype_kind(value_dtype) != dtype_kind(dtype):
                raise AveragingError(
                    f"member {member_id!r}: key {key!r} is {dtype_kind(value_dtype)} "
                    f"({value_dtype}) but {dtype_kind(dtype)} ({dtype}) in {ref!r}")

    def check_fixed(self, key: str, value: torch.Tensor, member_id: str) -> None:
        """A tensor that must equal the first member's (integer tensor, frozen BN stat)."""
        fixed = self.fixed[key]
        if not torch.equal(value.to(fixed.device, fixed.dtype), fixed):
            raise AveragingError(self._fixed_mismatch(key, member_id))

    def _fixed_mismatch(self, key: str, member_id: str) -> str:
        if is_bn_stat(key):
            return (f"member {member_id!r}: batch-norm statistic {key!r} differs from "
                    f"{self.member_id!r}. With frozen batch norm (the core's default) it is "
                    "the same in every run, so these runs trained live batch-norm "
                    "statistics: pass allow_live_bn=True with a recompute_bn function that "
                    "re-estimates them on training data")
        return (f"member {member_id!r}: integer tensor {key!r} differs from "
                f"{self.member_id!r}; integer tensors cannot be averaged and must be "
                "identical in all members")


def check_bn_options(allow_live_bn: bool, recompute_bn: Optional[object]) -> None:
    if allow_live_bn and recompute_bn is None:
        raise AveragingError("allow_live_bn=True needs recompute_bn, a function that takes "
                             "the averaged state dict and returns it with batch-norm "
                             "statistics re-estimated on training data")
    if recompute_bn is not None and not allow_live_bn:
        raise AveragingError("recompute_bn is only used with allow_live_bn=True; frozen "
                             "batch-norm statistics are identical in all members and kept")


def recompute_bn_stats(state: Dict[str, torch.Tensor], recompute_bn) -> Dict[str, torch.Tensor]:
    """Apply the caller's ``recompute_bn(state) -> state`` and check it kept the layout."""
    new_state = recompute_bn(state)
    if not isinstance(new_state, Mapping) or new_state.keys() != state.keys():
        raise AveragingError("recompute_bn must return the state dict it was given, with "
                             "the batch-norm statistics re-estimated (same keys)")
    return dict(new_state)
