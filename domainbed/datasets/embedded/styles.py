"""Domain styles of the embedded benchmark: how a content's signed-distance field is painted.

A style ``f(d, rng)`` takes the signed distance ``d`` (n, SIZE, SIZE) in output pixels and
returns RGB images (n, 3, SIZE, SIZE) in [0, 1]. Styles differ in what a domain shift
changes in real data: filled vs outlined, stroke width, flat vs shaded vs textured paint,
background (flat, gradient, blotches, clutter), colour range, resolution and noise.
Every random draw is from ``rng`` and uniform-based (see geometry.py on determinism).

``plain`` and ``stipple`` are the pretraining task's styles and no target dataset's: every
held-out target domain is then a style the foundation featurizer never saw, as photos
pretraining a network do not make sketches or paintings in-distribution.
"""

from typing import Callable

import numpy as np

from domainbed.datasets.embedded import geometry as g
from domainbed.registry import Registry

StyleFn = Callable[[np.ndarray, np.random.RandomState], np.ndarray]
STYLE_REGISTRY: Registry = Registry("embedded style")
register_style = STYLE_REGISTRY.register


def hsv_to_rgb(h, s, v) -> np.ndarray:
    """Vectorised HSV -> RGB for (n,) arrays in [0, 1]; returns (n, 3, 1, 1) float32."""
    h6 = np.asarray(h, dtype=np.float64) * 6.0
    sector = np.floor(h6).astype(int) % 6
    f = h6 - np.floor(h6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    rgb = np.stack([np.choose(sector, [row[c] for row in table]) for c in range(3)], axis=1)
    return rgb.astype(np.float32)[:, :, None, None]


def coverage(d: np.ndarray, soft: float = 1.0) -> np.ndarray:
    """Filled shape, anti-aliased over ``soft`` pixels: (n, 1, SIZE, SIZE)."""
    return np.clip(0.5 - d / soft, 0.0, 1.0)[:, None]


def band(d: np.ndarray, width, soft: float = 1.0) -> np.ndarray:
    """The outline of a shape, ``width`` pixels wide: (n, 1, SIZE, SIZE)."""
    if np.ndim(width):
        width = np.asarray(width, dtype=np.float32)[:, None, None]
    return np.clip(0.5 + (width * 0.5 - np.abs(d)) / soft, 0.0, 1.0)[:, None]


def mix(under: np.ndarray, over: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return under + (over - under) * alpha


def _direction(rng, n):
    """A uniformly random unit vector per sample, as (n, 1, 1) x and y parts."""
    while True:  # rejection sampling keeps it arithmetic; a retry is astronomically rare
        a, b = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
        r = np.sqrt(a * a + b * b)
        if np.all(r > 1e-6):
            return ((a / r).astype(np.float32)[:, None, None],
                    (b / r).astype(np.float32)[:, None, None])


def _ramp(rng, n):
    """A linear ramp in [0, 1] across the image along a random direction: (n, 1, S, S)."""
    dx, dy = _direction(rng, n)
    return np.clip((g.GRID_X * dx + g.GRID_Y * dy) * 0.5 + 0.5, 0.0, 1.0)[:, None]


def _grey(value) -> np.ndarray:
    return np.repeat(np.asarray(value, dtype=np.float32)[:, None, None, None], 3, axis=1)


def _contrasting(rng, n, backgrounds: int = 1):
    """A foreground colour and background colours whose brightness differs clearly from it."""
    dark_fg = rng.rand(n) < 0.5
    fg_value = np.where(dark_fg, rng.uniform(.08, .35, n), rng.uniform(.7, 1., n))
    fg = hsv_to_rgb(rng.rand(n), rng.uniform(.45, 1., n), fg_value)
    bgs = [hsv_to_rgb(rng.rand(n), rng.uniform(.05, .5, n),
                      np.where(dark_fg, rng.uniform(.6, .95, n), rng.uniform(.08, .4, n)))
           for _ in range(backgrounds)]
    return (fg, *bgs)


def _pixel_noise(rng, shape, amplitude):
    return ((rng.rand(*shape) - 0.5) * (2 * amplitude)).astype(np.float32)


@register_style("photo")
def photo(d, rng):
    """Filled, shaded object on a smooth gradient background with mild sensor noise."""
    n = len(d)
    fg, bg = _contrasting(rng, n)
    bg_far = np.clip(bg * rng.uniform(.7, 1.3, (n, 3, 1, 1)).astype(np.float32), 0, 1)
    back = mix(bg, bg_far, _ramp(rng, n)) * (0.8 + 0.4 * g.smooth_noise(rng, n, 3, 3))
    front = fg * (0.75 + 0.5 * _ramp(rng, n))
    img = mix(back, front, coverage(d))
    return img + _pixel_noise(rng, img.shape, 0.04)


@register_style("cartoon")
def cartoon(d, rng):
    """Flat saturated fill, thick dark outline, flat pastel background."""
    n = len(d)
    bg = hsv_to_rgb(rng.rand(n), rng.uniform(.08, .3, n), rng.uniform(.85, 1., n))
    fg = hsv_to_rgb(rng.rand(n), rng.uniform(.6, 1., n), rng.uniform(.6, .95, n))
    ink = _grey(rng.uniform(0., .15, n))
    img = mix(bg, fg, coverage(d))
    return mix(img, ink, band(d, rng.uniform(1.6, 2.4, n)))


@register_style("sketch")
def sketch(d, rng):
    """Grey pencil outline only, thin and broken, on off-white paper."""
    n = len(d)
    paper = _grey(rng.uniform(.85, 1., n)) * np.array([1., .98, .93], np.float32)[:, None, None]
    paper = paper * (0.95 + 0.05 * g.smooth_noise(rng, n, 6, 6))
    pencil = 0.45 + 0.55 * rng.rand(n, 1, g.SIZE, g.SIZE).astype(np.float32)
    ink = _grey(rng.uniform(.05, .35, n))
    return mix(paper, ink, band(d, rng.uniform(.7, 1.3, n)) * pencil)


@register_style("painting")
def painting(d, rng):
    """Brush-streaked fill with soft wobbly edges over a blotchy coloured background."""
    n = len(d)
    fg, bg, bg_other = _contrasting(rng, n, backgrounds=2)
    back = mix(bg, bg_other, g.smooth_noise(rng, n, 4, 4))
    across = rng.rand(n) < 0.5
    streaks = np.where(across[:, None, None, None], g.smooth_noise(rng, n, 12, 3),
                       g.smooth_noise(rng, n, 3, 12))
    front = fg * (0.7 + 0.6 * streaks)
    wobble = (g.smooth_noise(rng, n, 5, 5)[:, 0] - 0.5) * 2.0
    return g.blur(mix(back, front, coverage(d + wobble, soft=2.0)))


@register_style("neon")
def neon(d, rng):
    """Glowing bright outline on a near-black background; the inside stays dark."""
    n = len(d)
    bg = hsv_to_rgb(rng.rand(n), rng.uniform(.3, 1., n), rng.uniform(0., .15, n))
    colour = hsv_to_rgb(rng.rand(n), rng.uniform(.7, 1., n), np.ones(n))
    glow = 1.0 / (1.0 + (d / 2.0) ** 2)
    line = band(d, rng.uniform(1.2, 2.0, n))
    return bg + colour * (0.6 * glow[:, None]) + line * (0.5 * colour + 0.5)


@register_style("mosaic")
def mosaic(d, rng):
    """Low resolution (2x2 blocks) with four levels per colour channel."""
    n = len(d)
    fg, bg = _contrasting(rng, n)
    img = mix(bg, fg, coverage(d))
    blocks = (img[..., ::2, ::2] + img[..., 1::2, ::2] + img[..., ::2, 1::2]
              + img[..., 1::2, 1::2]) * 0.25
    img = blocks.repeat(2, axis=-1).repeat(2, axis=-2)
    return np.round(np.clip(img, 0, 1) * 3.0) / 3.0


@register_style("clutter")
def clutter(d, rng, distractors: int = 5):
    """Filled object over random distractor strokes on a noisy background, strong noise."""
    n = len(d)
    back = hsv_to_rgb(rng.rand(n), rng.uniform(.1, .6, n), rng.uniform(.3, .7, n))
    img = back * (0.8 + 0.4 * g.smooth_noise(rng, n, 4, 4))
    col = lambda a: a.astype(np.float32)[:, None, None]  # noqa: E731
    for _ in range(distractors):
        ends = [col(rng.uniform(-1, 1, n)) for _ in range(4)]
        dist = g.segment_distance(g.GRID_X, g.GRID_Y, *ends) * g.PX_PER_UNIT
        stroke = hsv_to_rgb(rng.rand(n), rng.uniform(0, 1, n), rng.uniform(0, 1, n))
        img = mix(img, stroke, coverage(dist - col(rng.uniform(.3, .7, n))))
    fg_value = np.where(rng.rand(n) < 0.5, rng.uniform(0, .15, n), rng.uniform(.85, 1., n))
    fg = hsv_to_rgb(rng.rand(n), rng.uniform(.3, 1., n), fg_value)
    img = mix(img, fg, coverage(d))
    return img + _pixel_noise(rng, img.shape, 0.12)


@register_style("plain")
def plain(d, rng):
    """Flat fill on a flat background of clearly different brightness; nothing else."""
    fg, bg = _contrasting(rng, len(d))
    return mix(bg, fg, coverage(d))


@register_style("stipple")
def stipple(d, rng):
    """The object as a dense field of random dots over a sparsely dotted background."""
    n = len(d)
    fg, bg = _contrasting(rng, n)
    density = 0.12 + 0.68 * coverage(d)
    dots = (rng.rand(n, 1, g.SIZE, g.SIZE) < density).astype(np.float32)
    return mix(bg, fg, dots)
