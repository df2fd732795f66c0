"""Choosing without the test domain: hyperparameters and members on pooled ID validation.

- :func:`choose_hparams` merges at every point of a rule's grid (its defaults first; the
  hyperparameters given in ``fixed`` are not searched) and keeps the point whose merged
  state has the highest ``inputs.evaluate`` (the pooled ID-validation accuracy; ties keep
  the earlier point, so the defaults win a tie). A grid of one point is merged without
  evaluation.
- :func:`greedy_merge` makes any rule greedy: members ranked by ID-validation accuracy join
  while the rule's result (its hyperparameters chosen again for each candidate set) does not
  degrade on ID validation (``acceptance="paper"``: ties kept; ``"strict"``: an improvement
  needed). Greedy over ``uniform`` is the ``greedy`` rule itself (the same bits).

Neither ever sees another split: the only score they read is ``inputs.evaluate``, which
callers bind to ID validation (``scoring.soups``).
"""

from typing import Any, Mapping, Optional, Union

from domainbed_aux.averaging.base import AveragingError, SoupResult
from domainbed_aux.merging.contract import MergeInputs, MergeRule
from domainbed_aux.merging.registry import get_rule

ACCEPTANCES = ("paper", "strict")


def _rule(rule: Union[str, MergeRule]) -> MergeRule:
    return get_rule(rule) if isinstance(rule, str) else rule


def choose_hparams(rule: Union[str, MergeRule], inputs: MergeInputs,
                   fixed: Optional[Mapping[str, Any]] = None) -> SoupResult:
    """The rule's result at the grid point with the best ID-validation accuracy."""
    rule = _rule(rule)
    points = rule.grid(fixed)
    rule.check_inputs(inputs)
    if len(points) == 1:
        result = rule.merge(inputs, points[0])
        result.hparams = dict(result.hparams or points[0])
        return result
    if inputs.evaluate is None:
        searched = sorted({k for p in points for k in p if len({str(q[k]) for q in points}) > 1})
        raise AveragingError(f"rule {rule.name!r} chooses {', '.join(searched)} on ID "
                             "validation: give evaluate (the pooled ID-validation accuracy "
                             "of a state dict), or fix them")
    best, grid = None, []
    for hparams, candidate in rule.merge_grid(inputs, points):
        acc = float(inputs.evaluate(candidate.state_dict))
        grid.append({"hparams": dict(hparams), "id_val": acc})
        if best is None or acc > best[2]:
            best = (dict(hparams), candidate, acc)
        del candidate
    hparams, result, acc = best
    result.hparams, result.val_acc = hparams, acc
    result.details = dict(result.details, selection={"split": "id_val", "grid": grid})
    return result


def _score(result: SoupResult, inputs: MergeInputs) -> float:
    if result.val_acc is not None:
        return float(result.val_acc)
    return float(inputs.evaluate(result.state_dict))


def greedy_merge(rule: Union[str, MergeRule], inputs: MergeInputs,
                 fixed: Optional[Mapping[str, Any]] = None,
                 acceptance: str = "paper") -> SoupResult:
    """Greedy member selection over any rule (see the module docstring)."""
    rule = _rule(rule)
    if acceptance not in ACCEPTANCES:
        raise AveragingError(f"unknown acceptance {acceptance!r}; known: "
                             f"{', '.join(ACCEPTANCES)}")
    if rule.chooses_members or rule.pooled:
        raise AveragingError(f"rule {rule.name!r} cannot be made greedy: it "
                             f"{'selects its members itself' if rule.chooses_members else 'pools every trial seed'}")
    if inputs.evaluate is None or inputs.val_acc_of_member is None:
        raise AveragingError("greedy selection needs val_acc_of_member (to rank the members) "
                             "and evaluate (the ID-validation accuracy of a merged state)")
    if rule.name == "uniform":
        return get_rule("greedy" if acceptance == "paper" else "greedy_strict").merge(inputs, {})
    ranked = inputs.ranked()
    start = max(1, rule.min_members)
    kept = ranked[:start]
    current = choose_hparams(rule, inputs.with_members(kept), fixed)
    soup_acc = _score(current, inputs)
    trace = [{"member": m, "val_acc": inputs.val_acc(m), "soup_acc": soup_acc, "kept": True,
              "n_in_soup": i + 1} for i, (m, _) in enumerate(kept)]
    for member_id, source in ranked[start:]:
        candidate = choose_hparams(rule, inputs.with_members(kept + [(member_id, source)]),
                                   fixed)
        acc = _score(candidate, inputs)
        keep = acc >= soup_acc if acceptance == "paper" else acc > soup_acc
        if keep:
            kept.append((member_id, source))
            current, soup_acc = candidate, acc
        del candidate
        trace.append({"member": member_id, "val_acc": inputs.val_acc(member_id),
                      "soup_acc": acc, "kept": keep, "n_in_soup": len(kept)})
    current.members = [m for m, _ in kept]
    current.n_candidates = len(inputs.members)
    current.trace, current.val_acc = trace, soup_acc
    current.rule = f"{rule.name}+greedy" + ("" if acceptance == "paper" else "_strict")
    return current


def merge_with(rule: Union[str, MergeRule], inputs: MergeInputs,
               fixed: Optional[Mapping[str, Any]] = None, greedy: Optional[str] = None
               ) -> SoupResult:
    """Run a rule as a caller asks: ``greedy`` None (every member), "paper" or "strict"."""
    rule = _rule(rule)
    if greedy:
        return greedy_merge(rule, inputs, fixed, greedy)
    return choose_hparams(rule, inputs, fixed)


def selected_text(hparams: Mapping[str, Any]) -> str:
    """``density=0.2, lambda=1`` (empty for a rule without hyperparameters)."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in hparams.items())


__all__ = ["ACCEPTANCES", "choose_hparams", "greedy_merge", "merge_with", "selected_text"]
