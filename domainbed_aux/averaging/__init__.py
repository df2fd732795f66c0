"""Weight averaging: arithmetic over state dicts, separate from file I/O and evaluation.

Rules are registered by name in :data:`WEIGHT_SELECTIONS` ("uniform", "greedy",
"greedy_strict", "dagger"); :func:`select_weights` runs one by name.
"""

from domainbed_aux.averaging.accumulator import StateAccumulator
from domainbed_aux.averaging.base import (WEIGHT_SELECTIONS, AveragingError, SoupResult,
                                          as_members, get_weight_selection, load_member,
                                          select_weights)
from domainbed_aux.averaging.checks import MemberSpec
from domainbed_aux.averaging.greedy import GREEDY_RULES, greedy_soup
from domainbed_aux.averaging.interpolation import interpolate, weighted_average
from domainbed_aux.averaging.uniform import dagger_soup, uniform_soup

__all__ = ["WEIGHT_SELECTIONS", "AveragingError", "SoupResult", "StateAccumulator",
           "MemberSpec", "GREEDY_RULES", "as_members", "load_member", "get_weight_selection",
           "select_weights", "uniform_soup", "greedy_soup", "dagger_soup", "interpolate",
           "weighted_average"]
