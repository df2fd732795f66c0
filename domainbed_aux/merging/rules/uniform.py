"""Uniform soup (Wortsman et al., ICML 2022, "Model soups"): the mean of every member, and
its dagger variant over every trial seed (the ratatouille paper's dagger rows)."""

from domainbed_aux.averaging import uniform_soup
from domainbed_aux.merging.contract import MergeRule
from domainbed_aux.merging.registry import register_rule


@register_rule
class Uniform(MergeRule):
    name = "uniform"
    title = "uniform"
    source = "Wortsman et al., Model soups, ICML 2022"
    definition = "theta = mean_i theta_i"
    memory = "one running sum + one member (2x one model)"
    in_table1 = True
    order = 0

    def merge(self, inputs, hparams):
        return uniform_soup(inputs.members, allow_live_bn=inputs.allow_live_bn,
                            recompute_bn=inputs.recompute_bn, accum_dtype=inputs.accum_dtype)


@register_rule
class Dagger(Uniform):
    name = "dagger"
    title = "uniform (dagger)"
    source = "Rame et al., Model Ratatouille, ICML 2023 (the dagger rows)"
    definition = "the uniform soup of the runs of every trial seed"
    pooled = True
    order = 3

    def merge(self, inputs, hparams):
        result = super().merge(inputs, hparams)
        result.rule = "dagger"
        return result
