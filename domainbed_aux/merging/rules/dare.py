"""DARE (Yu et al., "Language Models are Super Mario: Absorbing Abilities from Homologous
Models as a Free Lunch", ICML 2024): drop each entry of each task vector with probability
``p`` and rescale the survivors by ``1 / (1 - p)``, then merge the sparse task vectors by
task arithmetic (``dare_linear``) or by TIES' sign election and disjoint mean
(``dare_ties``). The masks are seeded by the member's position, the tensor's name and the
merge seed, so the same inputs give the same weights."""

from domainbed_aux.merging.arithmetic import (dare_transform, plus_base, sum_task_vectors,
                                              ties_merge)
from domainbed_aux.merging.contract import HParam, MergeRule, result
from domainbed_aux.merging.registry import register_rule
from domainbed_aux.merging.rules.task_arithmetic import LAMBDAS
from domainbed_aux.merging.rules.ties import by_prefix
from domainbed_aux.merging.stream import MemberSet

DROPS = (0.3, 0.5, 0.7, 0.9)


@register_rule
class DareLinear(MergeRule):
    name = "dare_linear"
    title = "DARE (linear)"
    source = "Yu et al., Language Models are Super Mario (DARE), ICML 2024"
    definition = ("tau_i' = m_i * tau_i / (1 - p), m_i ~ Bernoulli(1 - p) per entry; "
                  "theta = theta_0 + lambda * sum_i tau_i'")
    needs = frozenset({"theta_0"})
    hparams = (HParam("p", 0.5, DROPS, "drop probability of each task-vector entry"),
               HParam("lambda", 0.3, LAMBDAS, "scale of the summed task vectors"))
    passes = 1
    memory = "the sum of sparse task vectors + one tensor (1x one model)"
    order = 12

    def merge(self, inputs, hparams):
        return next(self.merge_grid(inputs, [hparams], inplace=True))[1]

    def merge_grid(self, inputs, points, inplace=False):
        for group in by_prefix(points, ["p"]):
            ms = MemberSet(inputs, with_base=True)
            try:
                total = sum_task_vectors(ms, dare_transform(float(group[0]["p"]), inputs.seed))
                for i, point in enumerate(group):
                    last = inplace and i == len(group) - 1
                    merged = plus_base(ms, total, float(point["lambda"]), inplace=last)
                    yield dict(point), result(self, ms.assemble(merged), inputs, point,
                                              {"seed": inputs.seed})
            finally:
                ms.close()


@register_rule
class DareTies(MergeRule):
    name = "dare_ties"
    title = "DARE (TIES)"
    source = ("Yu et al., DARE, ICML 2024, with Yadav et al., TIES-Merging, NeurIPS 2023")
    definition = ("tau_i' = m_i * tau_i / (1 - p), m_i ~ Bernoulli(1 - p) per entry; then "
                  "TIES on the tau_i' (trim to density, elect signs, disjoint mean, lambda)")
    needs = frozenset({"theta_0"})
    hparams = (HParam("p", 0.5, DROPS, "drop probability of each task-vector entry"),
               HParam("lambda", 1.0, (0.5, 1.0, 1.5), "scale of the merged task vector"),
               HParam("density", 1.0, (), "TIES' trim after the drop (1: none, the drop "
                                          "is the sparsification)"))
    passes = 2
    memory = ("summed mass, then elected signs (int8) + agreeing sum + counts (uint8) + one "
              "tensor (1.5x one model)")
    order = 13

    def merge(self, inputs, hparams):
        return next(self.merge_grid(inputs, [hparams], inplace=True))[1]

    def merge_grid(self, inputs, points, inplace=False):
        for group in by_prefix(points, ["p", "density"]):
            ms = MemberSet(inputs, with_base=True)
            try:
                transform = dare_transform(float(group[0]["p"]), inputs.seed)
                tau = ties_merge(ms, float(group[0]["density"]), transform)
                for i, point in enumerate(group):
                    last = inplace and i == len(group) - 1
                    merged = plus_base(ms, tau, float(point["lambda"]), inplace=last)
                    yield dict(point), result(self, ms.assemble(merged), inputs, point,
                                              {"seed": inputs.seed})
            finally:
                ms.close()
