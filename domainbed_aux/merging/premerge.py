"""Checks before merging: are these members close enough to be averaged?

- **pairwise geometry**: the Gram matrix of the members' differences to a reference
  (theta_0 when known, else the first member), accumulated in float64 over chunks of each
  tensor read from every member at once (memory: M chunks, at most 2^24 values in all):
  the L2 distance between every two members and, with theta_0, the cosine between their
  task vectors and each task vector's norm;
- **midpoint**: the ID-validation accuracy of the midpoint of the two most distant members
  against the mean of theirs (a midpoint below its endpoints: no linear path between them);
- **collapse**: the ID-validation accuracy of the uniform average against the mean of the
  members' own; when it is more than ``margin`` below, a one-line warning names the likely
  cause (learning rates or steps of the averaged checkpoints too far apart, from the
  members' ``info``) and the members involved (the model-soups collapse).

Only the members and the caller's ``evaluate`` (pooled ID validation) are read.
"""

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from domainbed_aux.averaging import uniform_soup
from domainbed_aux.merging.contract import MergeInputs
from domainbed_aux.merging.stream import MemberSet, numel

COLLAPSE_MARGIN = 0.01   # 1 point of accuracy: below it, a soup is within noise of its members
LR_SPAN = 10.0           # learning rates this many times apart are named as a cause
STEP_SPAN = 4.0          # checkpoints this many times apart in steps are named as a cause
_CHUNK_VALUES = 1 << 24


def pairwise(inputs: MergeInputs) -> Dict[str, Any]:
    """``{"distances", "cosines" (None without theta_0), "norms" (of the task vectors),
    "reference"}`` over the members' merged tensors (see the module docstring)."""
    ms = MemberSet(inputs, with_base=inputs.theta_0 is not None)
    opened = []
    try:
        opened = [ms.open(i) for i in range(len(ms))]
        m = len(opened)
        gram = torch.zeros(m, m, dtype=torch.float64)
        chunk = max(1 << 12, _CHUNK_VALUES // max(m, 1))
        for key in ms.merged:
            size = numel(ms.layout[key])
            for start in range(0, size, chunk):
                stop = min(size, start + chunk)
                rows = torch.stack([w.get_flat(key, start, stop).double() for w in opened])
                ref = ms.base.get_flat(key, start, stop).double() if ms.base is not None \
                    else rows[0].clone()
                rows.sub_(ref)
                gram.add_(rows @ rows.T)
                del rows
    finally:
        for w in opened:
            w.close()
        ms.close()
    diag = torch.diagonal(gram)
    squared = (diag[:, None] + diag[None, :] - 2 * gram).clamp_(min=0)
    distances = squared.sqrt()
    out = {"members": ms.ids, "distances": distances.tolist(), "cosines": None, "norms": None,
           "reference": "theta_0" if ms.base is not None else f"member {ms.ids[0]}"}
    if ms.base is not None:
        norms = diag.clamp(min=0).sqrt()
        denom = norms[:, None] * norms[None, :]
        cos = torch.where(denom > 0, gram / denom.clamp(min=1e-300), torch.zeros_like(gram))
        out["cosines"] = cos.tolist()
        out["norms"] = norms.tolist()
    return out


def most_distant(distances: Sequence[Sequence[float]]) -> Optional[Tuple[int, int]]:
    best = None
    for i in range(len(distances)):
        for j in range(i + 1, len(distances)):
            if best is None or distances[i][j] > distances[best[0]][best[1]]:
                best = (i, j)
    return best


def _span(values: Mapping[str, Optional[float]]):
    known = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and v > 0}
    if len(known) < 2:
        return None
    low = min(known, key=known.get)
    high = max(known, key=known.get)
    return known[high] / known[low], (low, known[low]), (high, known[high])


def likely_cause(info: Mapping[str, Mapping[str, Any]], names: Mapping[str, str]
                 ) -> Tuple[Optional[str], List[str]]:
    """``(text, member ids)`` of the largest spread among the members' learning rates and
    checkpoint steps (None when neither is wide)."""
    found = []
    lr = _span({m: (i or {}).get("lr") for m, i in info.items()})
    if lr and lr[0] >= LR_SPAN:
        found.append((lr[0], f"learning rates {lr[0]:.0f}x apart ({lr[1][1]:g} for "
                             f"{names.get(lr[1][0], lr[1][0])}, {lr[2][1]:g} for "
                             f"{names.get(lr[2][0], lr[2][0])})", [lr[1][0], lr[2][0]]))
    steps = _span({m: (i or {}).get("step") for m, i in info.items()})
    if steps and steps[0] >= STEP_SPAN:
        found.append((steps[0], f"checkpoints {steps[0]:.0f}x apart in steps "
                                f"({steps[1][1]:g} for {names.get(steps[1][0], steps[1][0])}, "
                                f"{steps[2][1]:g} for {names.get(steps[2][0], steps[2][0])})",
                      [steps[1][0], steps[2][0]]))
    if not found:
        return None, []
    found.sort(key=lambda f: -f[0])
    return "; ".join(f[1] for f in found), [m for f in found for m in f[2]]


def premerge_checks(inputs: MergeInputs, info: Optional[Mapping[str, Mapping[str, Any]]] = None,
                    names: Optional[Mapping[str, str]] = None,
                    margin: float = COLLAPSE_MARGIN) -> Dict[str, Any]:
    """Every check of the module docstring as a JSON-ready dict; ``info``: per member id,
    its ``lr`` and the ``step`` of its averaged checkpoint; ``names``: short member names
    for the texts. ``inputs.evaluate`` (ID validation) scores; without it only the geometry
    is reported."""
    names = dict(names or {})
    ids = [m for m, _ in inputs.members]
    label = lambda m: names.get(m, m)  # noqa: E731
    checks: Dict[str, Any] = {"split": "id_val", **pairwise(inputs)}
    checks["members"] = [label(m) for m in ids]
    checks["warning"] = None
    if len(ids) < 2 or inputs.evaluate is None:
        checks["midpoint"] = checks["uniform"] = None
        return checks
    live = {"allow_live_bn": inputs.allow_live_bn, "recompute_bn": inputs.recompute_bn,
            "accum_dtype": inputs.accum_dtype}
    own = {}
    for member_id, source in inputs.members:
        own[member_id] = float(inputs.evaluate(uniform_soup([(member_id, source)],
                                                            **live).state_dict))
    i, j = most_distant(checks["distances"])
    pair = [inputs.members[i], inputs.members[j]]
    midpoint = float(inputs.evaluate(uniform_soup(pair, **live).state_dict))
    ends = (own[ids[i]] + own[ids[j]]) / 2
    checks["midpoint"] = {"members": [label(ids[i]), label(ids[j])],
                          "distance": checks["distances"][i][j],
                          "cosine": checks["cosines"][i][j] if checks["cosines"] else None,
                          "id_val": midpoint, "endpoints_mean": ends, "gain": midpoint - ends}
    soup = float(inputs.evaluate(uniform_soup(inputs.members, **live).state_dict))
    mean = sum(own.values()) / len(own)
    checks["uniform"] = {"id_val": soup, "members_mean": mean, "gain": soup - mean,
                         "members": {label(m): own[m] for m in ids}}
    if soup < mean - margin:
        cause, involved = likely_cause(info or {}, names)
        far = f"{label(ids[i])} and {label(ids[j])}"
        cos = checks["midpoint"]["cosine"]
        far += f" (task-vector cosine {cos:.2f})" if cos is not None else \
            f" (distance {checks['distances'][i][j]:.3g})"
        cause = cause or "the runs ended in different basins"
        checks["warning"] = (
            f"warning: the uniform average of {len(ids)} runs scores {100 * soup:.1f}% on ID "
            f"validation, below its members' mean {100 * mean:.1f}%: likely cause: {cause}; "
            f"most distant members: {far}")
        checks["warning_members"] = [label(m) for m in dict.fromkeys(involved + [ids[i], ids[j]])]
    return checks


def format_checks(checks: Mapping[str, Any]) -> List[str]:
    """A few lines for a terminal."""
    lines = ["checks before merging (ID validation):"]
    n = len(checks.get("members") or [])
    off = lambda matrix: [matrix[a][b] for a in range(n) for b in range(a + 1, n)]  # noqa: E731

    def spread(values):
        return (f"min {min(values):.3g} / mean {sum(values) / len(values):.3g} / "
                f"max {max(values):.3g}") if values else "n/a"
    if n > 1:
        if checks.get("cosines"):
            lines.append(f"  task-vector cosine: {spread(off(checks['cosines']))}")
        lines.append(f"  weight distance: {spread(off(checks['distances']))}")
    mid = checks.get("midpoint")
    if mid:
        lines.append(f"  midpoint of the most distant pair ({mid['members'][0]}, "
                     f"{mid['members'][1]}): {100 * mid['id_val']:.2f}% vs their mean "
                     f"{100 * mid['endpoints_mean']:.2f}% ({100 * mid['gain']:+.2f})")
    uni = checks.get("uniform")
    if uni:
        lines.append(f"  uniform average: {100 * uni['id_val']:.2f}% vs the members' mean "
                     f"{100 * uni['members_mean']:.2f}% ({100 * uni['gain']:+.2f})")
    if checks.get("warning"):
        lines.append(checks["warning"])
    return lines


def plot_checks(checks: Mapping[str, Any], path: str):
    """The pairwise matrices (cosines of task vectors when known, distances) as a PNG."""
    from domainbed_aux.analysis.plots import plot_pairwise
    matrices = {}
    if checks.get("cosines"):
        matrices["task-vector cosine"] = checks["cosines"]
    matrices["weight distance (L2)"] = checks["distances"]
    return plot_pairwise(matrices, checks["members"], path=path,
                         title="Checks before merging: pairwise matrices")


