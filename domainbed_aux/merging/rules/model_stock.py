"""Model stock (Jang, Yun and Han, "Model Stock: All we need is just a few fine-tuned models",
ECCV 2024): per tensor, interpolate between the members' mean and the base with a ratio
given by the angle between the task vectors,
``t = N cos / (1 + (N - 1) cos)``, ``theta = t * mean_i theta_i + (1 - t) * theta_0``,
where ``cos`` is the mean cosine over the pairs of task vectors of that tensor.

Conventions where the paper's formula is undefined: a zero task vector has cosine 0 with
every other; a negative mean cosine is taken as 0 (t = 0: the base); one member gives
t = 1 (the member). Two passes: the cosines (from the sum of unit task vectors,
``sum_{i != j} cos_ij = |sum_i u_i|^2 - sum_i |u_i|^2``), then the mean."""

import torch

from domainbed_aux.merging.contract import MergeRule, result
from domainbed_aux.merging.registry import register_rule
from domainbed_aux.merging.stream import MemberSet


def stock_ratio(n: int, cos: float) -> float:
    if n == 1:
        return 1.0
    cos = min(max(cos, 0.0), 1.0)
    return n * cos / (1.0 + (n - 1) * cos)


@register_rule
class ModelStock(MergeRule):
    name = "model_stock"
    title = "model stock"
    source = "Jang, Yun and Han, Model Stock, ECCV 2024"
    definition = ("per tensor: t = N cos / (1 + (N-1) cos), cos the mean pairwise cosine of "
                  "the tau_i; theta = t * mean_i theta_i + (1 - t) * theta_0")
    needs = frozenset({"theta_0"})
    passes = 2
    memory = "the sum of unit task vectors, then the sum of members + one tensor (1x one model)"
    order = 14

    def merge(self, inputs, hparams):
        ms = MemberSet(inputs, with_base=True)
        try:
            n = len(ms)
            units, counts = {}, {k: 0 for k in ms.merged}
            for _, _, weights in ms.each():  # pass 1: the sum of unit task vectors
                for key in ms.merged:
                    tau = ms.tau(weights, key)
                    norm = float(torch.linalg.vector_norm(tau.double()))
                    if norm > 0:
                        tau.div_(norm)
                        counts[key] += 1
                    else:
                        tau.zero_()
                    if key in units:
                        units[key].add_(tau)
                    else:
                        units[key] = tau
            ratios, cosines = {}, {}
            for key in ms.merged:
                unit = units.pop(key).double()
                pairs = float(unit.dot(unit) if unit.dim() == 1 else (unit * unit).sum())
                cos = (pairs - counts[key]) / (n * (n - 1)) if n > 1 else 1.0
                cosines[key], ratios[key] = cos, stock_ratio(n, cos)
            total = {}
            for _, _, weights in ms.each():  # pass 2: the mean of the members
                ms.add_uniform(weights)
                for key in ms.merged:
                    if key in total:
                        total[key].add_(weights.get(key).to(total[key].dtype))
                    else:
                        total[key] = ms.theta(weights, key)
            merged = {}
            for key in ms.merged:
                t = ratios[key]
                merged[key] = total.pop(key).mul_(t / n).add_(ms.base_of(key), alpha=1.0 - t)
            values = list(ratios.values())
            details = {"t_min": min(values), "t_mean": sum(values) / len(values),
                       "t_max": max(values), "cos_mean": sum(cosines.values()) / len(cosines)} \
                if values else {}
            return result(self, ms.assemble(merged), inputs, {}, details)
        finally:
            ms.close()
