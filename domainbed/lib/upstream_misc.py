"""More of upstream DomainBed's ``lib/misc.py`` names (re-exported by ``domainbed.lib.misc``),
for code written against upstream: weight-space distances, a moving average of tensors,
element-wise dict arithmetic, minibatch pairings, ``Tee`` and small printing helpers."""

import operator
import sys
from collections import OrderedDict
from numbers import Number
from typing import Dict, List

import torch


def distance(h1: torch.nn.Module, h2: torch.nn.Module) -> torch.Tensor:
    """Euclidean distance between two networks' state dicts (same keys)."""
    s1, s2 = h1.state_dict(), h2.state_dict()
    return torch.sqrt(sum(torch.sum((s1[k].float() - s2[k].float()) ** 2) for k in s1))


def proj(delta: float, adv_h: torch.nn.Module, h: torch.nn.Module) -> torch.nn.Module:
    """``adv_h`` moved, in place, onto the ball of radius ``delta`` around ``h`` if it lies
    outside it."""
    dist = distance(adv_h, h)
    if dist <= delta:
        return adv_h
    ratio = delta / dist
    with torch.no_grad():
        for p_adv, p in zip(adv_h.parameters(), h.parameters()):
            p_adv.copy_(p + ratio * (p_adv - p))
    return adv_h


def l2_between_dicts(dict_1: Dict[str, torch.Tensor],
                     dict_2: Dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean squared difference of the values, flattened in ``dict_1``'s sorted key order."""
    assert len(dict_1) == len(dict_2)
    keys = sorted(dict_1)
    a = torch.cat([dict_1[k].reshape(-1) for k in keys])
    b = torch.cat([dict_2[k].reshape(-1) for k in keys])
    return (a - b).pow(2).mean()


class MovingAverage:
    """Exponential moving average of dicts of tensors (each flattened to shape (1, -1)); with
    the correction the returned value is divided by ``1 - ema``."""

    def __init__(self, ema: float, oneminusema_correction: bool = True):
        self.ema = ema
        self.ema_data: Dict[str, torch.Tensor] = {}
        self._updates = 0
        self._oneminusema_correction = oneminusema_correction

    def update(self, dict_data: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        out = {}
        for name, data in dict_data.items():
            data = data.view(1, -1)
            previous = self.ema_data[name] if self._updates else torch.zeros_like(data)
            value = self.ema * previous + (1 - self.ema) * data
            out[name] = value / (1 - self.ema) if self._oneminusema_correction else value
            self.ema_data[name] = value.clone().detach()
        self._updates += 1
        return out


class ParamDict(OrderedDict):
    """A dict of tensors with element-wise ``+ - * /`` against a number or another dict."""

    def _prototype(self, other, op):
        if isinstance(other, Number):
            return ParamDict({k: op(v, other) for k, v in self.items()})
        if isinstance(other, dict):
            return ParamDict({k: op(self[k], other[k]) for k in self})
        raise NotImplementedError

    def __add__(self, other):
        return self._prototype(other, operator.add)

    def __rmul__(self, other):
        return self._prototype(other, operator.mul)

    __mul__ = __rmul__

    def __neg__(self):
        return ParamDict({k: -v for k, v in self.items()})

    def __rsub__(self, other):
        # as upstream: both orders give self - other
        return self.__add__(-ParamDict(other) if isinstance(other, dict) else -other)

    __sub__ = __rsub__

    def __truediv__(self, other):
        return self._prototype(other, operator.truediv)


def random_pairs_of_minibatches(minibatches) -> List[tuple]:
    """Each domain's batch with the next one in a random (torch RNG) cyclic order, both cut
    to the shorter length."""
    perm = torch.randperm(len(minibatches)).tolist()
    pairs = []
    for i in range(len(minibatches)):
        j = i + 1 if i < len(minibatches) - 1 else 0
        (xi, yi), (xj, yj) = minibatches[perm[i]], minibatches[perm[j]]
        n = min(len(xi), len(xj))
        pairs.append(((xi[:n], yi[:n]), (xj[:n], yj[:n])))
    return pairs


def split_meta_train_test(minibatches, num_meta_test: int = 1) -> List[tuple]:
    """Random permutation of the domains; the last ``num_meta_test`` are meta-test, each
    meta-train domain is paired with a meta-test domain in turn (cut to the shorter)."""
    n_domains = len(minibatches)
    perm = torch.randperm(n_domains).tolist()
    pairs = []
    meta_train = perm[:n_domains - num_meta_test]
    meta_test = perm[-num_meta_test:]
    for i, j in zip(meta_train, meta_test * len(meta_train)):
        (xi, yi), (xj, yj) = minibatches[i], minibatches[j]
        n = min(len(xi), len(xj))
        pairs.append(((xi[:n], yi[:n]), (xj[:n], yj[:n])))
    return pairs


def print_separator() -> None:
    print("=" * 80)


def pdb() -> None:
    """Drop into the debugger with the real stdout (a ``Tee`` may have replaced it)."""
    sys.stdout = sys.__stdout__
    import pdb as _pdb
    print("Launching PDB, enter 'n' to step to parent function.")
    _pdb.set_trace()


class Tee:
    """A file-like object that writes to the current ``sys.stdout`` and to ``fname``.
    (Our scripts write their files explicitly; this is for upstream-style code.)"""

    def __init__(self, fname: str, mode: str = "a"):
        self.stdout = sys.stdout
        self.file = open(fname, mode)

    def write(self, message: str) -> None:
        self.stdout.write(message)
        self.file.write(message)
        self.flush()

    def flush(self) -> None:
        self.stdout.flush()
        self.file.flush()
