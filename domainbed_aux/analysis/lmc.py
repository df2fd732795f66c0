"""Linear mode connectivity: accuracy along straight lines (and a simplex) between weights.

Two models are *linearly connected* when every interpolation ``(1 - l) a + l b`` is about as
accurate as the endpoints. The paper tests it for full models (its Hypothesis 2) and for
featurizers under one fixed head (Hypothesis 1: e.g. two pool members under the shared linear
probe's classifier). The arithmetic is :func:`domainbed_aux.averaging.weighted_average`;
scores come from an ``evaluate(state_dict) -> accuracy`` function given by the caller.
"""

from typing import Callable, Dict, List, Mapping, Optional, Sequence

import torch

from domainbed.errors import DomainBedError
from domainbed_aux.averaging import weighted_average

StateDict = Dict[str, torch.Tensor]
Parts = Mapping[str, Mapping[str, torch.Tensor]]


def lambda_grid(n_points: int) -> List[float]:
    """``n_points`` evenly spaced coefficients from 0 to 1, both included."""
    if n_points < 2:
        raise DomainBedError(f"--n_points {n_points}: need at least 2 (the two endpoints)")
    return [i / (n_points - 1) for i in range(n_points)]


def parse_grid(text: str) -> List[float]:
    """``"0,0.5,1"`` -> ``[0.0, 0.5, 1.0]``."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DomainBedError(f"{text!r} is not a comma-separated list of numbers; "
                             "example: 0,0.25,0.5,0.75,1") from None
    if not values:
        raise DomainBedError("empty list of coefficients; example: 0,0.5,1")
    return values


def simplex_grid(n_divisions: int) -> List[tuple]:
    """Barycentric points ``(i, j, k) / n`` with ``i + j + k = n`` (corners included)."""
    if n_divisions < 1:
        raise DomainBedError(f"--n_points {n_divisions}: need at least 1 division")
    n = n_divisions
    return [(i / n, j / n, (n - i - j) / n) for i in range(n + 1) for j in range(n + 1 - i)]


def flatten_parts(parts: Parts, names: Sequence[str]) -> StateDict:
    """``{"featurizer": {k: v}}`` -> ``{"featurizer.k": v}`` for the named parts."""
    flat = {}
    for name in names:
        if name not in parts:
            raise DomainBedError(f"the weights have no {name} (they hold: "
                                 f"{', '.join(parts) or 'nothing'})")
        flat.update({f"{name}.{k}": v for k, v in parts[name].items()})
    return flat


def unflatten_parts(flat: Mapping[str, torch.Tensor]) -> Dict[str, StateDict]:
    parts: Dict[str, StateDict] = {}
    for key, value in flat.items():
        name, inner = key.split(".", 1)
        parts.setdefault(name, {})[inner] = value
    return parts


def mix(states: Sequence[Mapping[str, torch.Tensor]], coefficients: Sequence[float]
        ) -> StateDict:
    """``sum_i c_i states[i]``; a coefficient of exactly 1 returns that state itself, so the
    endpoints of a curve are the original weights bit for bit."""
    coefficients = [float(c) for c in coefficients]
    if sorted(coefficients) == [0.0] * (len(coefficients) - 1) + [1.0]:
        return dict(states[coefficients.index(1.0)])
    members = [(f"m{i}", s) for i, s in enumerate(states)]
    return weighted_average(members, list(coefficients))


def curve(evaluate: Callable[[StateDict], float], a: Mapping[str, torch.Tensor],
          b: Mapping[str, torch.Tensor], lambdas: Sequence[float]) -> Dict[str, object]:
    """Accuracy of ``(1 - l) a + l b`` for each ``l``; plus the midpoint summary."""
    accs = [evaluate(mix([a, b], [1.0 - lam, lam])) for lam in lambdas]
    result = {"lambdas": list(lambdas), "accuracies": accs}
    result.update(midpoint_summary(lambdas, accs, evaluate, a, b))
    return result


def midpoint_summary(lambdas: Sequence[float], accs: Sequence[float],
                     evaluate: Optional[Callable[[StateDict], float]] = None,
                     a=None, b=None) -> Dict[str, float]:
    """Accuracy at l = 0.5 vs the mean of the two endpoints (``midpoint_gain`` = difference).

    A positive gain says the two are linearly connected and their average helps.
    """
    by_lambda = dict(zip(lambdas, accs))
    endpoints = []
    for lam, weights in ((0.0, (1.0, 0.0)), (1.0, (0.0, 1.0))):
        if lam in by_lambda:
            endpoints.append(by_lambda[lam])
        elif evaluate is not None:
            endpoints.append(evaluate(mix([a, b], list(weights))))
    if 0.5 in by_lambda:
        mid = by_lambda[0.5]
    elif evaluate is not None:
        mid = evaluate(mix([a, b], [0.5, 0.5]))
    else:
        raise DomainBedError("the grid has no 0.5 and no evaluator to score the midpoint")
    mean_ends = sum(endpoints) / len(endpoints)
    return {"midpoint_acc": mid, "endpoints_mean_acc": mean_ends,
            "midpoint_gain": mid - mean_ends}


def three_way(evaluate: Callable[[StateDict], float], states: Sequence[Mapping],
              n_divisions: int) -> Dict[str, object]:
    """Accuracy over a barycentric grid of three models (corners = the models)."""
    if len(states) != 3:
        raise DomainBedError(f"three-way connectivity needs 3 models, got {len(states)}")
    points = simplex_grid(n_divisions)
    accs = [evaluate(mix(states, list(p))) for p in points]
    best = max(range(len(points)), key=lambda i: accs[i])
    return {"points": [list(p) for p in points], "accuracies": accs,
            "best_point": list(points[best]), "best_acc": accs[best],
            "corner_accs": [accs[points.index(c)] for c in
                            ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))],
            "center_acc": evaluate(mix(states, [1 / 3, 1 / 3, 1 / 3]))}
