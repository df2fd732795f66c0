"""Greedy soup (Wortsman et al., ICML 2022): members ranked by ID-validation accuracy join the
running average unless its pooled ID-validation accuracy drops (``greedy``: the ratatouille
and DiWA released code, ties kept) or unless it fails to improve (``greedy_strict``: model
soups). Any other rule is made greedy by ``merging.selection.greedy_merge``."""

from domainbed_aux.averaging import greedy_soup
from domainbed_aux.merging.contract import MergeRule
from domainbed_aux.merging.registry import register_rule


@register_rule
class Greedy(MergeRule):
    name = "greedy"
    title = "greedy"
    source = "Wortsman et al., Model soups, ICML 2022; Rame et al., ICML 2023 (ties kept)"
    definition = ("add members by decreasing ID-validation accuracy; keep each unless the "
                  "pooled ID-validation accuracy of the average becomes strictly lower")
    needs = frozenset({"member_val_acc", "id_val"})
    memory = "one running sum + one member + one candidate average (3x one model)"
    chooses_members = True
    in_table1 = True
    order = 1
    acceptance = "paper"

    def merge(self, inputs, hparams):
        self.check_inputs(inputs)
        return greedy_soup(inputs.members, inputs.val_acc_of_member, inputs.evaluate,
                           rule=self.acceptance, allow_live_bn=inputs.allow_live_bn,
                           recompute_bn=inputs.recompute_bn, accum_dtype=inputs.accum_dtype,
                           tie_order=inputs.tie_order)


@register_rule
class GreedyStrict(Greedy):
    name = "greedy_strict"
    title = "greedy (strict)"
    source = "Wortsman et al., Model soups, ICML 2022"
    definition = ("add members by decreasing ID-validation accuracy; keep each only if the "
                  "pooled ID-validation accuracy of the average strictly improves")
    in_table1 = False
    order = 2
    acceptance = "strict"
