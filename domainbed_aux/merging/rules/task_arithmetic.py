"""Task arithmetic (Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023): add the
scaled sum of the task vectors to the base, ``theta = theta_0 + lambda * sum_i tau_i``."""

from domainbed_aux.merging.arithmetic import plus_base, sum_task_vectors
from domainbed_aux.merging.contract import HParam, MergeRule, result
from domainbed_aux.merging.registry import register_rule
from domainbed_aux.merging.stream import MemberSet

LAMBDAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


@register_rule
class TaskArithmetic(MergeRule):
    name = "task_arithmetic"
    title = "task arithmetic"
    source = "Ilharco et al., Editing Models with Task Arithmetic, ICLR 2023"
    definition = "theta = theta_0 + lambda * sum_i (theta_i - theta_0)"
    needs = frozenset({"theta_0"})
    hparams = (HParam("lambda", 0.3, LAMBDAS, "scale of the summed task vectors (1/M: the "
                                               "uniform average)"),)
    passes = 1
    memory = "the sum of task vectors + one tensor (1x one model)"
    order = 10

    def merge(self, inputs, hparams):
        return next(self.merge_grid(inputs, [hparams], inplace=True))[1]

    def merge_grid(self, inputs, points, inplace=False):
        ms = MemberSet(inputs, with_base=True)
        try:
            total = sum_task_vectors(ms)
            for i, point in enumerate(points):
                last = inplace and i == len(points) - 1
                merged = plus_base(ms, total, float(point["lambda"]), inplace=last)
                yield dict(point), result(self, ms.assemble(merged), inputs, point)
        finally:
            ms.close()
