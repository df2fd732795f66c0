"""TIES-merging (Yadav et al., "TIES-Merging: Resolving Interference When Merging Models",
NeurIPS 2023): trim each task vector to its top-``density`` entries by magnitude, elect the
sign of each entry by the summed trimmed mass, average the entries that agree with it
(disjoint mean), and add ``lambda`` times the result to the base."""

from domainbed_aux.merging.arithmetic import plus_base, ties_merge
from domainbed_aux.merging.contract import HParam, MergeRule, result
from domainbed_aux.merging.registry import register_rule
from domainbed_aux.merging.stream import MemberSet

DENSITIES = (0.1, 0.2, 0.5)
SCALES = (0.5, 0.8, 1.0, 1.2, 1.5)


def by_prefix(points, names):
    """Points grouped by the values of ``names`` (the hparams that need new passes)."""
    groups = {}
    for point in points:
        groups.setdefault(tuple(point[n] for n in names), []).append(point)
    return list(groups.values())


@register_rule
class Ties(MergeRule):
    name = "ties"
    title = "TIES"
    source = "Yadav et al., TIES-Merging, NeurIPS 2023"
    definition = ("trim each tau_i to its top-density entries by magnitude; elect each "
                  "entry's sign by the summed trimmed mass; theta = theta_0 + lambda * mean of "
                  "the trimmed entries that agree with the elected sign")
    needs = frozenset({"theta_0"})
    hparams = (HParam("density", 0.2, DENSITIES, "fraction of each task vector kept"),
               HParam("lambda", 1.0, SCALES, "scale of the merged task vector"))
    passes = 4
    memory = ("summed trimmed mass, then elected signs (int8) + agreeing sum + counts (uint8) "
              "+ one tensor (1.5x one model)")
    order = 11

    def merge(self, inputs, hparams):
        return next(self.merge_grid(inputs, [hparams], inplace=True))[1]

    def merge_grid(self, inputs, points, inplace=False):
        for group in by_prefix(points, ["density"]):
            ms = MemberSet(inputs, with_base=True)
            try:
                tau = ties_merge(ms, float(group[0]["density"]))
                for i, point in enumerate(group):
                    last = inplace and i == len(group) - 1
                    merged = plus_base(ms, tau, float(point["lambda"]), inplace=last)
                    yield dict(point), result(self, ms.assemble(merged), inputs, point)
            finally:
                ms.close()
