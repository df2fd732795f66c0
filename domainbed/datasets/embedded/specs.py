"""The embedded datasets: what each one draws, in which domain styles, and how many.

``generate(name)`` renders a dataset from fixed seeds: the same bytes in every process and
on every machine. Bump ``GENERATOR_VERSION`` whenever a change alters a single byte: the
version is part of the cache file name, so old caches are ignored.
"""

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from domainbed.datasets.embedded import content as c
from domainbed.datasets.embedded.styles import STYLE_REGISTRY
from domainbed.lib.seeds import seed_hash

GENERATOR_VERSION = 2


@dataclass(frozen=True)
class EmbeddedSpec:
    """One dataset: class names, images per class and domain, and how its content is drawn;
    its domain styles are the environments its dataset class declares (read from the
    registry's index)."""
    name: str
    classes: Tuple[str, ...]
    per_class: int
    content: c.ContentFn

    @property
    def domains(self) -> Tuple[str, ...]:
        from domainbed.datasets.registry import declared_environments
        return tuple(declared_environments(self.name))

    @property
    def n_per_domain(self) -> int:
        return len(self.classes) * self.per_class


def _spec(name, classes, per_class, content) -> EmbeddedSpec:
    return EmbeddedSpec(name, tuple(classes), per_class, content)


_PRETRAIN_CLASSES = [name for names, _ in c.PRETRAIN_PARTS for name in names]

SPECS: Dict[str, EmbeddedSpec] = {s.name: s for s in [
    _spec("EmbeddedShapes", c.SHAPE_SDFS, 64, c.shapes_content),
    _spec("EmbeddedGlyphs", ["digit_" + k for k in sorted(c.DIGITS)], 45, c.glyphs_content),
    _spec("EmbeddedArrows", ["arrow_" + k for k in c.ARROW_DIRECTIONS], 56, c.arrows_content),
    _spec("EmbeddedTextures", c.TEXTURE_SDFS, 64, c.textures_content),
    _spec("EmbeddedCounts", ["count_%d" % k for k in range(1, 6)], 90, c.counts_content),
    _spec("EmbeddedPretrain", _PRETRAIN_CLASSES, 110, c.pretrain_content),
]}


def get_spec(name: str) -> EmbeddedSpec:
    if name not in SPECS:
        raise KeyError(f"unknown embedded dataset {name!r}; known: {', '.join(SPECS)}")
    return SPECS[name]


def render_domain(spec: EmbeddedSpec, domain_index: int) -> Tuple[np.ndarray, np.ndarray]:
    """Images (n, 3, 32, 32) uint8 and labels (n,) int64 of one domain, in a shuffled order."""
    domain = spec.domains[domain_index]
    style = STYLE_REGISTRY.get(domain)
    images: List[np.ndarray] = []
    for class_index in range(len(spec.classes)):
        # one stream per (dataset, domain, class): editing one class leaves the others intact
        rng = np.random.RandomState(seed_hash("embedded", spec.name, domain, class_index))
        sdf = spec.content(rng, class_index, spec.per_class)
        images.append(style(sdf, rng))
    x = np.concatenate(images)
    y = np.repeat(np.arange(len(spec.classes), dtype=np.int64), spec.per_class)
    order_rng = np.random.RandomState(seed_hash("embedded", spec.name, domain, "order"))
    order = order_rng.permutation(len(y))
    x = np.round(np.clip(x[order], 0.0, 1.0) * 255.0).astype(np.uint8)
    return x, y[order]


def generate(name: str) -> Dict[str, np.ndarray]:
    """All domains of dataset ``name``: ``x`` uint8 (N, 3, 32, 32), ``y`` int64, ``env`` int64."""
    spec = get_spec(name)
    xs, ys, envs = [], [], []
    for i in range(len(spec.domains)):
        x, y = render_domain(spec, i)
        xs.append(x)
        ys.append(y)
        envs.append(np.full(len(y), i, dtype=np.int64))
    return {"x": np.concatenate(xs), "y": np.concatenate(ys), "env": np.concatenate(envs)}
