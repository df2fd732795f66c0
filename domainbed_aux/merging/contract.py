"""The merge-rule contract: what a rule declares and what it is given.

A rule is a subclass of :class:`MergeRule` registered by name
(:func:`domainbed_aux.merging.registry.register_rule`) in a file of its own under
``domainbed_aux/merging/rules/``. It declares

- ``name`` (what ``--weight_selection`` and ``--rules`` accept), ``title`` (the text of its
  Table 1 row), ``source`` (the paper it follows) and ``definition`` (one line);
- ``needs``: what it is given besides the members (``NEEDS``): the base weights theta_0,
  batches of training-domain data, each member's ID-validation accuracy, the pooled
  ID-validation score of a merged state;
- ``member_statistics``: what it computes per member from that data (Fisher, Gram
  matrices), if anything;
- ``hparams``: its hyperparameters, each with a default and the grid that selection on ID
  validation may search;
- ``streams``, ``passes`` and ``memory``: whether members are read one at a time, how many
  times each, and its memory bound in words;

and implements ``merge(inputs, hparams) -> SoupResult`` (optionally ``merge_grid`` to share
work between grid points). Rules are arithmetic over state dicts: files are read through
:mod:`.sources`, scores come from the caller's functions.
"""

import itertools
import math
from dataclasses import dataclass, field
from typing import (Any, Callable, ClassVar, Dict, FrozenSet, Iterable, Iterator, List,
                    Mapping, Optional, Sequence, Tuple)

import torch

from domainbed_aux.averaging.accumulator import DEFAULT_ACCUM_DTYPE
from domainbed_aux.averaging.base import AveragingError, SoupResult, StateDict

# what a rule may need besides the members
NEEDS = {
    "theta_0": "the base weights: the members' common ancestor (w_lp, phi_pt)",
    "train_data": "batches of training-domain data and a model to run a member on them",
    "member_val_acc": "each member's ID-validation accuracy (to rank members)",
    "id_val": "the pooled ID-validation accuracy of a merged state (to accept members)",
}


@dataclass(frozen=True)
class HParam:
    """A hyperparameter: its default and the values selection on ID validation may try."""

    name: str
    default: Any
    grid: Tuple[Any, ...] = ()
    help: str = ""

    def values(self) -> Tuple[Any, ...]:
        """The values searched: the default first, then the rest of the grid in order."""
        rest = tuple(v for v in self.grid if v != self.default)
        return (self.default,) + rest


class TrainingData:
    """Training-domain data for data-aware rules: ``batches(n_examples)`` yields ``(x, y)``
    batches of at most ``n_examples`` examples in all (the same ones on every call), and
    ``model(state)`` returns the network of a member in eval mode, on its device."""

    def batches(self, n_examples: int) -> Iterable[Tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def model(self, state: Mapping[str, torch.Tensor]) -> torch.nn.Module:
        raise NotImplementedError


@dataclass
class MergeInputs:
    """What a rule is given.

    ``members``: ``[(member_id, source)]`` in averaging order; ``theta_0``: the base weights
    (a source); ``val_acc_of_member``: a mapping or function member id -> ID-validation
    accuracy; ``evaluate``: state dict -> pooled ID-validation accuracy; ``data``: a
    :class:`TrainingData`; ``allow_live_bn`` / ``recompute_bn``: the batch-norm policy of
    :mod:`domainbed_aux.averaging.checks`; ``tie_order``: member ids in the order that
    breaks ties in ID-validation accuracy; ``seed``: for rules that draw (DARE);
    ``on_open``: called with a member id each time a member is opened (progress).
    """

    members: List[Tuple[str, Any]]
    theta_0: Any = None
    val_acc_of_member: Any = None
    evaluate: Optional[Callable[[StateDict], float]] = None
    data: Optional[TrainingData] = None
    allow_live_bn: bool = False
    recompute_bn: Optional[Callable[[StateDict], StateDict]] = None
    accum_dtype: torch.dtype = DEFAULT_ACCUM_DTYPE
    tie_order: Optional[Sequence[str]] = None
    seed: int = 0
    on_open: Optional[Callable[[str], None]] = None

    def with_members(self, members: List[Tuple[str, Any]]) -> "MergeInputs":
        from dataclasses import replace
        return replace(self, members=list(members))

    def val_acc(self, member_id: str) -> float:
        source = self.val_acc_of_member
        if source is None:
            raise AveragingError("this rule ranks members by their ID-validation accuracy: "
                                 "give val_acc_of_member")
        try:
            acc = source(member_id) if callable(source) else source[member_id]
        except KeyError:
            raise AveragingError(f"no ID-validation accuracy for member {member_id!r}; "
                                 "val_acc_of_member must cover every member") from None
        if acc is None or not math.isfinite(float(acc)):
            raise AveragingError(f"member {member_id!r} has ID-validation accuracy {acc!r}; "
                                 "a finite number is needed to rank it")
        return float(acc)

    def ranked(self) -> List[Tuple[str, Any]]:
        """Members by ID-validation accuracy, descending; ties by ``tie_order`` else by id."""
        if self.tie_order is not None:
            position = {m: i for i, m in enumerate(self.tie_order)}
            tie = lambda m: position.get(m, len(position))  # noqa: E731
        else:
            tie = lambda m: m  # noqa: E731
        accs = {m: self.val_acc(m) for m, _ in self.members}
        return sorted(self.members, key=lambda pair: (-accs[pair[0]], tie(pair[0])))


class MergeRule:
    """Base class of merge rules (see the module docstring)."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    source: ClassVar[str] = ""
    definition: ClassVar[str] = ""
    needs: ClassVar[FrozenSet[str]] = frozenset()
    member_statistics: ClassVar[Optional[str]] = None
    hparams: ClassVar[Tuple[HParam, ...]] = ()
    streams: ClassVar[bool] = True
    passes: ClassVar[int] = 1
    memory: ClassVar[str] = ""
    min_members: ClassVar[int] = 1
    pooled: ClassVar[bool] = False         # one soup of every trial seed (dagger)
    chooses_members: ClassVar[bool] = False  # selects members on ID validation itself
    in_table1: ClassVar[bool] = False      # already a row of Table 1 (uniform, greedy, ...)
    order: ClassVar[float] = 100.0         # where it is listed
    version: ClassVar[int] = 1             # bump when results change (report cache)

    # -- what callers read ---------------------------------------------------------------
    def defaults(self) -> Dict[str, Any]:
        return {h.name: h.default for h in self.hparams}

    def grid(self, fixed: Optional[Mapping[str, Any]] = None) -> List[Dict[str, Any]]:
        """Every point selection tries, the defaults first; ``fixed`` hparams are not
        searched."""
        fixed = dict(fixed or {})
        unknown = sorted(set(fixed) - {h.name for h in self.hparams})
        if unknown:
            known = ", ".join(h.name for h in self.hparams) or "none"
            raise AveragingError(f"rule {self.name!r} has no hyperparameter "
                                 f"{', '.join(repr(u) for u in unknown)}; its "
                                 f"hyperparameters: {known}")
        axes = [(h.name, (fixed[h.name],) if h.name in fixed else h.values())
                for h in self.hparams]
        points = [dict(zip([n for n, _ in axes], combo))
                  for combo in itertools.product(*[v for _, v in axes])]
        return points or [{}]

    def describe(self) -> Dict[str, Any]:
        """The contract as plain data (docs, ``--help``, JSON)."""
        return {"name": self.name, "title": self.title, "source": self.source,
                "definition": self.definition, "needs": sorted(self.needs),
                "member_statistics": self.member_statistics,
                "hparams": [{"name": h.name, "default": h.default, "grid": list(h.grid),
                             "help": h.help} for h in self.hparams],
                "streams": self.streams, "passes": self.passes, "memory": self.memory,
                "min_members": self.min_members, "pooled": self.pooled}

    def check_inputs(self, inputs: MergeInputs) -> None:
        """Raise :class:`AveragingError` naming what is missing."""
        if len(inputs.members) < max(1, self.min_members):
            raise AveragingError(f"rule {self.name!r} merges at least {max(1, self.min_members)} "
                                 f"members; got {len(inputs.members)}")
        if "theta_0" in self.needs and inputs.theta_0 is None:
            raise AveragingError(f"rule {self.name!r} needs theta_0, the members' common "
                                 "ancestor (for runs of a sweep: the shared linear probe "
                                 "(w_lp, phi_pt)); give theta_0")
        if "train_data" in self.needs and inputs.data is None:
            raise AveragingError(f"rule {self.name!r} needs training-domain data "
                                 f"({self.member_statistics}); give data")
        if "member_val_acc" in self.needs and inputs.val_acc_of_member is None:
            raise AveragingError(f"rule {self.name!r} needs val_acc_of_member, each "
                                 "member's ID-validation accuracy")
        if "id_val" in self.needs and inputs.evaluate is None:
            raise AveragingError(f"rule {self.name!r} needs evaluate, the ID-validation "
                                 "accuracy of a state dict")

    # -- what rules implement ------------------------------------------------------------
    def merge(self, inputs: MergeInputs, hparams: Mapping[str, Any]) -> SoupResult:
        raise NotImplementedError

    def merge_grid(self, inputs: MergeInputs, points: Sequence[Mapping[str, Any]]
                   ) -> Iterator[Tuple[Dict[str, Any], SoupResult]]:
        """``(hparams, result)`` for each point, one at a time (rules override it to share
        passes over the members between points)."""
        for point in points:
            yield dict(point), self.merge(inputs, point)


def result(rule: MergeRule, state: StateDict, inputs: MergeInputs,
           hparams: Mapping[str, Any], details: Optional[Dict[str, Any]] = None,
           members: Optional[List[str]] = None) -> SoupResult:
    """A rule's :class:`SoupResult`."""
    return SoupResult(rule=rule.name, state_dict=state,
                      members=members if members is not None else [m for m, _ in inputs.members],
                      n_candidates=len(inputs.members), bn_recomputed=inputs.allow_live_bn,
                      hparams=dict(hparams), details=dict(details or {}))





class InMemoryData(TrainingData):
    """Training data held as tensors ``x``, ``y`` and a function building the network of a
    state dict (library use and tests); the first ``n_examples`` examples, in order."""

    def __init__(self, make_model: Callable[[Mapping[str, torch.Tensor]], torch.nn.Module],
                 x: torch.Tensor, y: torch.Tensor, batch_size: int = 64):
        self.make_model, self.x, self.y, self.batch_size = make_model, x, y, batch_size

    def batches(self, n_examples: int):
        n = min(int(n_examples), len(self.x))
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            yield self.x[start:stop], self.y[start:stop]

    def model(self, state):
        return self.make_model(state).eval()


__all__ = ["NEEDS", "HParam", "TrainingData", "InMemoryData", "MergeInputs", "MergeRule",
           "result"]
