"""The two parts of a model of the core, and the key prefixes they go by in a state dict.

A model of the core stores its featurizer under ``featurizer.*`` and its head under
``classifier.*``; ``network.0.*`` / ``network.1.*`` alias them (upstream's ``Sequential``
layout, which upstream's own files use alone), and the trajectory algorithms (MA, SWAD)
add their live network as ``network_live.0.*`` / ``network_live.1.*``. Init files, pool
members and probes are written with the first spelling only. Torch-free.
"""

from typing import Dict, Mapping, Optional, Tuple, TypeVar

FEATURIZER = "featurizer"
CLASSIFIER = "classifier"
FEATURIZER_PREFIX = FEATURIZER + "."
CLASSIFIER_PREFIX = CLASSIFIER + "."

# where a featurizer is looked for in a model file, in order: ours, then upstream's layout
FEATURIZER_PREFIXES = (FEATURIZER_PREFIX, "network.0.")
# every name under which a model of the core stores its featurizer / classifier
PART_PREFIXES = {FEATURIZER: (FEATURIZER_PREFIX, "network.0.", "network_live.0."),
                 CLASSIFIER: (CLASSIFIER_PREFIX, "network.1.", "network_live.1.")}

V = TypeVar("V")


def strip_prefix(state: Mapping[str, V], prefix: str) -> Dict[str, V]:
    """The entries of ``state`` whose key starts with ``prefix``, prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def add_prefix(part: Mapping[str, V], prefix: str) -> Dict[str, V]:
    """``part`` with ``prefix`` in front of every key."""
    return {prefix + k: v for k, v in part.items()}


def split_parts(state: Mapping[str, V]) -> Tuple[Dict[str, V], Dict[str, V]]:
    """``(featurizer, classifier)`` of a state dict in our layout, prefixes removed."""
    return strip_prefix(state, FEATURIZER_PREFIX), strip_prefix(state, CLASSIFIER_PREFIX)


def join_parts(featurizer: Mapping[str, V],
               classifier: Optional[Mapping[str, V]] = None) -> Dict[str, V]:
    """One state dict in our layout: ``featurizer.*`` then ``classifier.*``."""
    state = add_prefix(featurizer, FEATURIZER_PREFIX)
    state.update(add_prefix(classifier or {}, CLASSIFIER_PREFIX))
    return state
