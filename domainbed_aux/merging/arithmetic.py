"""Streamed arithmetic on task vectors ``tau_i = theta_i - theta_0`` shared by several rules.

Every function reads the members through a :class:`~.stream.MemberSet`, one member and one
tensor at a time, and holds accumulators of at most one model (plus small per-tensor or
per-member numbers). A ``transform(index, key, tau) -> tau`` rewrites each task vector as it
is read (DARE's random drop).
"""

import math
from typing import Callable, Dict, List, Optional

import torch

from domainbed_aux.merging.stream import MemberSet, numel

Transform = Optional[Callable[[int, str, torch.Tensor], torch.Tensor]]
_HIST = 1 << 16


def _taus(ms: MemberSet, weights, index: int, transform: Transform):
    for key in ms.merged:
        tau = ms.tau(weights, key)
        yield key, (transform(index, key, tau) if transform is not None else tau)


def sum_task_vectors(ms: MemberSet, transform: Transform = None) -> Dict[str, torch.Tensor]:
    """``sum_i tau_i`` per merged key (also adds the members' uniform tensors)."""
    total: Dict[str, torch.Tensor] = {}
    for index, _, weights in ms.each():
        ms.add_uniform(weights)
        for key, tau in _taus(ms, weights, index, transform):
            if key in total:
                total[key].add_(tau)
            else:
                total[key] = tau
    return total


def plus_base(ms: MemberSet, values: Dict[str, torch.Tensor], scale: float,
              inplace: bool = False) -> Dict[str, torch.Tensor]:
    """``theta_0 + scale * values`` per key (in place: ``values`` is consumed)."""
    out = {}
    for key in ms.merged:
        value = values[key] if inplace else values[key].clone()
        out[key] = value.mul_(scale).add_(ms.base_of(key))
    return out


# -- TIES: trim, elect, disjoint mean ----------------------------------------------------------

def kth_largest_magnitude(chunks: Callable[[], "iter"], k: int) -> float:
    """The ``k``-th largest value of non-negative float32 values, exactly, without holding
    them: ``chunks()`` yields them as 1-D tensors (and can be called twice). The bit
    pattern of a non-negative float32 orders like its value, so two histograms of 16 bits
    each (the high half, then the low half within the bin that holds the k-th value) find it.
    """
    high = torch.zeros(_HIST, dtype=torch.int64)
    total = 0
    for values in chunks():
        bits = values.contiguous().view(torch.int32)
        high += torch.bincount(bits >> 16, minlength=_HIST)
        total += values.numel()
    if k < 1 or k > total:
        raise ValueError(f"k={k} outside 1..{total}")
    from_top = torch.flip(high, [0]).cumsum(0)
    index = int(torch.searchsorted(from_top, k))  # first bin (from the top) reaching k
    high_bits = _HIST - 1 - index
    above = int(from_top[index - 1]) if index > 0 else 0
    low = torch.zeros(_HIST, dtype=torch.int64)
    for values in chunks():
        bits = values.contiguous().view(torch.int32)
        inside = bits[(bits >> 16) == high_bits]
        low += torch.bincount(inside & 0xFFFF, minlength=_HIST)
    from_top = torch.flip(low, [0]).cumsum(0)
    low_bits = _HIST - 1 - int(torch.searchsorted(from_top, k - above))
    pattern = torch.tensor([(high_bits << 16) | low_bits], dtype=torch.int64).to(torch.int32)
    return float(pattern.view(torch.float32))


def member_thresholds(ms: MemberSet, density: float, transform: Transform = None
                      ) -> List[float]:
    """Per member, the magnitude of its ``ceil(density * n)``-th largest task-vector entry
    (n: its number of merged entries); entries at or above it survive the trim. Magnitudes
    are ranked in float32. ``density >= 1`` keeps everything (threshold 0)."""
    n = sum(numel(ms.layout[k]) for k in ms.merged)
    if density >= 1.0 or n == 0:
        return [0.0] * len(ms)
    k = max(1, math.ceil(density * n))
    thresholds = []
    for index, (member_id, _) in enumerate(ms.members):
        weights = ms.open(index)
        try:
            def chunks():
                for _, tau in _taus(ms, weights, index, transform):
                    yield tau.abs().to(torch.float32).reshape(-1)
            thresholds.append(kth_largest_magnitude(chunks, k))
        finally:
            weights.close()
    return thresholds


def _trimmed(tau: torch.Tensor, threshold: float) -> torch.Tensor:
    if threshold > 0:
        tau.masked_fill_(tau.abs().to(torch.float32) < threshold, 0)
    return tau


def ties_merge(ms: MemberSet, density: float, transform: Transform = None
               ) -> Dict[str, torch.Tensor]:
    """TIES' merged task vector per key: each member trimmed to its top ``density``
    entries by magnitude, the sign of each entry elected by the summed trimmed mass, and the
    mean of the trimmed entries that agree with it (0 where none agrees, or where the summed
    mass is exactly 0). Two passes after the thresholds; also adds the uniform tensors."""
    thresholds = member_thresholds(ms, density, transform)
    mass: Dict[str, torch.Tensor] = {}
    for index, _, weights in ms.each():  # pass 1: the elected signs
        ms.add_uniform(weights)
        for key, tau in _taus(ms, weights, index, transform):
            tau = _trimmed(tau, thresholds[index])
            if key in mass:
                mass[key].add_(tau)
            else:
                mass[key] = tau
    signs = {}
    for key in list(mass):
        signs[key] = torch.sign(mass.pop(key)).to(torch.int8)
    count_dtype = torch.uint8 if len(ms) < 256 else torch.int32
    agree: Dict[str, torch.Tensor] = {}
    counts: Dict[str, torch.Tensor] = {}
    for index, _, weights in ms.each():  # pass 2: the disjoint mean
        for key, tau in _taus(ms, weights, index, transform):
            tau = _trimmed(tau, thresholds[index])
            keep = (torch.sign(tau).to(torch.int8) == signs[key]) & (tau != 0)
            tau.masked_fill_(~keep, 0)
            if key in agree:
                agree[key].add_(tau)
                counts[key].add_(keep.to(count_dtype))
            else:
                agree[key] = tau
                counts[key] = keep.to(count_dtype)
    del signs
    for key in ms.merged:
        agree[key].div_(counts.pop(key).clamp_(min=1).to(agree[key].dtype))
    return agree


# -- DARE: drop and rescale --------------------------------------------------------------------

def dare_generator(seed: int, index: int, key: str) -> torch.Generator:
    """The generator of member ``index``'s mask on ``key``: seeded by
    ``seed_hash(seed, "dare", index, key)``, so every pass draws the same mask."""
    from domainbed.lib.misc import seed_hash
    return torch.Generator().manual_seed(seed_hash(seed, "dare", index, key))


def dare_transform(drop: float, seed: int) -> Transform:
    """Each entry of each task vector dropped with probability ``drop`` (kept where a
    uniform draw in [0, 1) is >= drop), survivors scaled by ``1 / (1 - drop)``."""
    if not 0.0 <= drop < 1.0:
        raise ValueError(f"drop rate p={drop} must be in [0, 1)")

    def transform(index: int, key: str, tau: torch.Tensor) -> torch.Tensor:
        if drop == 0.0:
            return tau
        draw = torch.rand(tau.shape, generator=dare_generator(seed, index, key))
        return tau.masked_fill_(draw < drop, 0).div_(1.0 - drop)
    return transform
