"""Weight averaging: arithmetic over state dicts, separate from file I/O and evaluation.

``uniform_soup``, ``greedy_soup``, ``dagger_soup``, ``weighted_average`` / ``interpolate``
and the running sum they share; the merge rules built on them (and every other rule) are
registered in :mod:`domainbed_aux.merging`.
"""

from domainbed_aux.averaging.accumulator import StateAccumulator
from domainbed_aux.averaging.base import (AveragingError, SoupResult, as_members,
                                          load_member)
from domainbed_aux.averaging.checks import MemberSpec
from domainbed_aux.averaging.greedy import GREEDY_RULES, greedy_soup
from domainbed_aux.averaging.interpolation import interpolate, weighted_average
from domainbed_aux.averaging.uniform import dagger_soup, uniform_soup

__all__ = ["AveragingError", "SoupResult", "StateAccumulator", "MemberSpec", "GREEDY_RULES",
           "as_members", "load_member", "uniform_soup", "greedy_soup", "dagger_soup",
           "interpolate", "weighted_average"]
