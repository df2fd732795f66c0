"""What every averaging function shares: members, results and errors (the rules that use them
are registered in :mod:`domainbed_aux.merging`).

A *member* is one set of weights to average. It is given as a path to a weight file (read
on the CPU with :func:`domainbed.lib.weights.load_file`), a state dict, an ``nn.Module``, or
a zero-argument callable returning a state dict. Members are loaded one at a time, when a
rule needs them, and each is loaded once.
"""

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from domainbed.errors import DomainBedError
from domainbed.lib.weights import extract_state_dict, load_file

StateDict = Dict[str, torch.Tensor]
MemberSource = Union[str, "os.PathLike[str]", Mapping[str, torch.Tensor], torch.nn.Module,
                     Callable[[], Mapping[str, torch.Tensor]]]
Members = Union[Sequence[Any], Mapping[str, MemberSource]]

class AveragingError(DomainBedError):
    """Weights that cannot be averaged (different keys, shapes, classes, live batch norm...)."""


@dataclass
class SoupResult:
    """The outcome of a weight-selection rule.

    ``members``: ids of the averaged members, in the order they were added.
    ``trace``: one entry per candidate (greedy rules): member, its own ``val_acc``, the
    ``soup_acc`` of the average with it, whether it was ``kept`` and the soup size after.
    ``bn_recomputed``: batch-norm statistics were re-estimated by the caller's function.
    ``hparams``: the rule's hyperparameters (chosen on ID validation or given);
    ``details``: what else the rule reports (per-tensor coefficients, the grid searched...).
    """

    rule: str
    state_dict: StateDict
    members: List[str]
    n_candidates: int
    trace: List[Dict[str, Any]] = field(default_factory=list)
    val_acc: Optional[float] = None
    bn_recomputed: bool = False
    hparams: Dict[str, Any] = field(default_factory=dict)
    details: Dict[str, Any] = field(default_factory=dict)

    def summary(self) -> Dict[str, Any]:
        """Everything but the weights, for reports and JSON."""
        return {"rule": self.rule, "members": list(self.members),
                "n_selected": len(self.members), "n_candidates": self.n_candidates,
                "val_acc": self.val_acc, "bn_recomputed": self.bn_recomputed,
                "trace": [dict(t) for t in self.trace]}


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(v, torch.Tensor) for v in obj.values())


def as_members(members: Members) -> List[Tuple[str, MemberSource]]:
    """Normalise members to ``[(member_id, source), ...]`` with unique ids.

    Accepts a mapping ``id -> source``, or a sequence of sources or ``(id, source)`` pairs;
    a path's id is the path itself, other sources get ``member<i>``.
    """
    if _is_state_dict(members):
        raise AveragingError("got one state dict where a collection of members was expected; "
                             "pass a list of state dicts or paths, or a dict id -> member")
    if isinstance(members, Mapping):
        pairs = [(str(k), v) for k, v in members.items()]
    else:
        pairs = []
        for i, item in enumerate(members):
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                pairs.append(item)
            elif isinstance(item, (str, os.PathLike)):
                pairs.append((os.fspath(item), item))
            else:
                pairs.append((f"member{i}", item))
    seen = set()
    for member_id, _ in pairs:
        if member_id in seen:
            raise AveragingError(f"member id {member_id!r} appears twice; give each member a "
                                 "unique id (or path)")
        seen.add(member_id)
    return pairs


def load_member(source: MemberSource, member_id: str = "member") -> StateDict:
    """The state dict of one member (files are read on the CPU, never unpickling code)."""
    if isinstance(source, (str, os.PathLike)):
        content, _ = load_file(os.fspath(source), device="cpu")
        return dict(extract_state_dict(content))
    if isinstance(source, torch.nn.Module):
        return dict(source.state_dict())
    if isinstance(source, Mapping):
        return dict(source)
    if callable(source):
        state = source()
        if not isinstance(state, Mapping):
            raise AveragingError(f"member {member_id!r}: its loader returned a "
                                 f"{type(state).__name__}, expected a state dict")
        return dict(state)
    raise AveragingError(f"member {member_id!r}: cannot read a {type(source).__name__}; "
                         "give a weight-file path, a state dict, an nn.Module or a callable")

