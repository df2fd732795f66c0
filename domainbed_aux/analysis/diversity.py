"""Diversity of two models' errors on the same examples (the paper's appendix analyses).

With N11 = both correct, N00 = both wrong, N10 = only the first correct, N01 = only the
second correct (examples counted, not weighted):

- q-statistic ``Q = (N11 N00 - N01 N10) / (N11 N00 + N01 N10)``, reported as ``1 - Q``
  (0 = errors perfectly aligned, up to 2 = errors never shared);
- ratio-error ``(N01 + N10) / N00`` (disagreements per shared error).

Zero denominators: Q is undefined (None) when ``N11 N00 + N01 N10 = 0`` (e.g. two models
that are both always right); ratio-error is ``inf`` when ``N00 = 0`` and the models disagree
somewhere, undefined (None) when they neither share an error nor disagree. JSON has no inf:
the writers store both cases as ``null`` with a note.
"""

import math
from typing import Dict, List, Optional, Sequence

import torch

from domainbed.errors import DomainBedError


def error_counts(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> Dict[str, int]:
    """``{"n11", "n10", "n01", "n00"}`` of two per-example correctness vectors."""
    a = torch.as_tensor(correct_a, dtype=torch.bool).flatten()
    b = torch.as_tensor(correct_b, dtype=torch.bool).flatten()
    if a.shape != b.shape:
        raise DomainBedError(f"the two models were scored on {a.numel()} and {b.numel()} "
                             "examples; compare predictions on the same split")
    return {"n11": int((a & b).sum()), "n10": int((a & ~b).sum()),
            "n01": int((~a & b).sum()), "n00": int((~a & ~b).sum())}


def q_statistic(counts: Dict[str, int]) -> Optional[float]:
    """Yule's Q of the two error patterns, None when its denominator is 0."""
    num = counts["n11"] * counts["n00"] - counts["n01"] * counts["n10"]
    den = counts["n11"] * counts["n00"] + counts["n01"] * counts["n10"]
    return None if den == 0 else num / den


def q_diversity(counts: Dict[str, int]) -> Optional[float]:
    """``1 - Q`` (None when Q is undefined)."""
    q = q_statistic(counts)
    return None if q is None else 1.0 - q


def ratio_error(counts: Dict[str, int]) -> Optional[float]:
    """``(N01 + N10) / N00``; ``inf`` when N00 = 0 < N01 + N10; None when both are 0."""
    disagreements = counts["n01"] + counts["n10"]
    if counts["n00"] == 0:
        return math.inf if disagreements else None
    return disagreements / counts["n00"]


def pair_diversity(correct_a, correct_b) -> Dict[str, object]:
    """Counts, ``q_diversity`` and ``ratio_error`` of one pair, JSON-ready (see module doc)."""
    counts = error_counts(correct_a, correct_b)
    q_div, ratio = q_diversity(counts), ratio_error(counts)
    notes = []
    if q_div is None:
        notes.append("q undefined: N11*N00 + N01*N10 = 0")
    if ratio is None:
        notes.append("ratio-error undefined: no shared error and no disagreement")
    elif math.isinf(ratio):
        notes.append("ratio-error infinite: no shared error (N00 = 0)")
        ratio = None
    return {**counts, "q_diversity": q_div, "ratio_error": ratio, "notes": notes}


def pairwise(correct: Sequence[Sequence[bool]]) -> Dict[str, List[List[Optional[float]]]]:
    """Symmetric matrices of ``q_diversity`` and ``ratio_error`` over a list of models.

    Diagonal entries compare a model with itself (Q = 1, so 1 - Q = 0 when defined).
    """
    n = len(correct)
    q_matrix = [[None] * n for _ in range(n)]
    r_matrix = [[None] * n for _ in range(n)]
    for i in range(n):
        for j in range(i, n):
            pair = pair_diversity(correct[i], correct[j])
            q_matrix[i][j] = q_matrix[j][i] = pair["q_diversity"]
            r_matrix[i][j] = r_matrix[j][i] = pair["ratio_error"]
    return {"q_diversity": q_matrix, "ratio_error": r_matrix}


def correctness(probabilities: Sequence[torch.Tensor], labels: Sequence[torch.Tensor]
                ) -> torch.Tensor:
    """Per-example correctness of argmax predictions, the sets of a split concatenated."""
    hits = [p.argmax(1).eq(y.to(p.device)) for p, y in zip(probabilities, labels) if len(y)]
    return torch.cat(hits).cpu() if hits else torch.zeros(0, dtype=torch.bool)
