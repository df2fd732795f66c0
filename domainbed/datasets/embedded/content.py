"""What each embedded dataset draws: per class, a signed-distance field of the content.

A content function ``f(rng, class_index, n)`` returns the signed distance (in output-image
pixels, negative inside) of n random instances of a class: the class fixes the geometry,
``rng`` draws the nuisances (position, size, small rotation, stroke width, jitter, pattern
frequency and phase). How the field is painted is the domain's style (styles.py).
"""

import math
from typing import Callable, Dict, List, Sequence

import numpy as np

from domainbed.datasets.embedded import geometry as g
from domainbed.datasets.embedded.glyphs import DIGITS, LETTERS

ContentFn = Callable[[np.random.RandomState, int, int], np.ndarray]


def _col(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)[:, None, None]


# ---- shapes ----------------------------------------------------------------------------

def _star(points: int, outer: float, inner: float) -> list:
    step = 360 // (2 * points)
    return [((outer if k % 2 == 0 else inner) * g.unit_vector(270 + k * step)[0],
             (outer if k % 2 == 0 else inner) * g.unit_vector(270 + k * step)[1])
            for k in range(2 * points)]


def _plus(arm: float, half: float) -> list:
    return [(-half, -arm), (half, -arm), (half, -half), (arm, -half), (arm, half), (half, half),
            (half, arm), (-half, arm), (-half, half), (-arm, half), (-arm, -half), (-half, -half)]


_TRIANGLE = [(x, y + .15) for x, y in g.regular_polygon(3, .9)]
_STAR = _star(6, .88, .45)  # six points: 36-degree steps would not be exact
_PLUS = _plus(.8, .26)
_HEART = [(0, .75), (-.55, .2), (-.78, -.2), (-.7, -.52), (-.42, -.68), (-.15, -.6),
          (0, -.38), (.15, -.6), (.42, -.68), (.7, -.52), (.78, -.2), (.55, .2)]
_TRAPEZOID = [(-.45, -.5), (.45, -.5), (.8, .5), (-.8, .5)]
_L_BLOCK = [(-.6, -.75), (-.15, -.75), (-.15, .3), (.6, .3), (.6, .75), (-.6, .75)]
_T_BLOCK = [(-.75, -.7), (.75, -.7), (.75, -.3), (.22, -.3), (.22, .75), (-.22, .75),
            (-.22, -.3), (-.75, -.3)]

SHAPE_SDFS: Dict[str, Callable] = {
    "circle": lambda u, v: g.circle_sdf(u, v, .75),
    "triangle": lambda u, v: g.polygon_sdf(u, v, _TRIANGLE),
    "square": lambda u, v: g.box_sdf(u, v, .62, .62),
    "star": lambda u, v: g.polygon_sdf(u, v, _STAR),
    "cross": lambda u, v: g.polygon_sdf(u, v, _PLUS),
    "ring": lambda u, v: np.abs(g.circle_sdf(u, v, .6)) - .2,
    "crescent": lambda u, v: np.maximum(g.circle_sdf(u, v, .75),
                                        -g.circle_sdf(u, v, .62, .35, -.2)),
}

PRETRAIN_SHAPE_SDFS: Dict[str, Callable] = {
    "square_ring": lambda u, v: np.abs(g.box_sdf(u, v, .55, .55)) - .17,
    "hexagon": lambda u, v: g.polygon_sdf(u, v, g.regular_polygon(6, .82)),
    "ellipse": lambda u, v: g.ellipse_sdf(u, v, .85, .45),
    "semicircle": lambda u, v: np.maximum(g.circle_sdf(u, v - .3, .8), v - .3),
    "trapezoid": lambda u, v: g.polygon_sdf(u, v, _TRAPEZOID),
    "heart": lambda u, v: g.polygon_sdf(u, v, _HEART),
    "l_block": lambda u, v: g.polygon_sdf(u, v, _L_BLOCK),
    "t_block": lambda u, v: g.polygon_sdf(u, v, _T_BLOCK),
}


def _shape_content(sdfs: Dict[str, Callable]) -> ContentFn:
    table = list(sdfs.values())

    def draw(rng, class_index, n):
        f = g.sample_frames(rng, n, scale=(.6, .88), shift=.14, max_degrees=15)
        return f.to_pixels(table[class_index](f.u, f.v))
    return draw


shapes_content = _shape_content(SHAPE_SDFS)


# ---- strokes (digits, letters) -----------------------------------------------------------

def _stroke_content(glyphs: Sequence[list]) -> ContentFn:
    def draw(rng, class_index, n):
        f = g.sample_frames(rng, n, scale=(.72, .95), shift=.1, max_degrees=12)
        strokes = []
        for line in glyphs[class_index]:  # per-sample jitter of every point: handwriting
            pts = np.asarray(line, dtype=np.float32)
            jitter = rng.uniform(-.06, .06, (n, len(line), 2)).astype(np.float32)
            strokes.append([(_col(pts[k, 0] + jitter[:, k, 0]), _col(pts[k, 1] + jitter[:, k, 1]))
                            for k in range(len(line))])
        half_width = _col(rng.uniform(.07, .12, n))
        return f.to_pixels(g.strokes_distance(f.u, f.v, strokes) - half_width)
    return draw


glyphs_content = _stroke_content([DIGITS[k] for k in sorted(DIGITS)])


# ---- arrows --------------------------------------------------------------------------------

_ARROW = [(-.78, -.14), (.18, -.14), (.18, -.48), (.82, 0), (.18, .48), (.18, .14), (-.78, .14)]
ARROW_DIRECTIONS = ["E", "NE", "N", "NW", "W", "SW", "S", "SE"]


def arrows_content(rng, class_index, n):
    # counter-clockwise on screen = negative angle with y pointing down
    base = g.unit_vector(-45 * class_index)
    f = g.sample_frames(rng, n, scale=(.68, .9), shift=.1, max_degrees=12, base=base)
    return f.to_pixels(g.polygon_sdf(f.u, f.v, _ARROW))


# ---- textures ------------------------------------------------------------------------------

def _zigzag(u, v, freq, phase):
    zig = (np.abs(g.frac(u * freq) - .5) - .25) * (1.2 / freq)
    return g.stripes_sdf(v + zig, freq, phase)


def _dots(u, v, freq, phase):
    du = (g.frac(u * freq + phase) - .5) / freq
    dv = (g.frac(v * freq + phase * 0.7) - .5) / freq
    return np.sqrt(du * du + dv * dv) - .3 / freq


def _lines(x, freq, phase):
    # thin lines at the integers of x * freq
    return (.5 - np.abs(g.frac(x * freq + phase) - .5)) / freq - .07


_R2 = math.sqrt(0.5)

TEXTURE_SDFS: Dict[str, Callable] = {
    "stripes_h": lambda u, v, f, p: g.stripes_sdf(v, f, p),
    "stripes_v": lambda u, v, f, p: g.stripes_sdf(u, f, p),
    "stripes_diag": lambda u, v, f, p: g.stripes_sdf((u + v) * _R2, f, p),
    "checker": lambda u, v, f, p: g.xor_sdf(g.stripes_sdf(u, f, p), g.stripes_sdf(v, f, p)),
    "dots": _dots,
    "rings": lambda u, v, f, p: g.stripes_sdf(np.sqrt(u * u + v * v), f, p),
    "zigzag": _zigzag,
}

PRETRAIN_PATTERN_SDFS: Dict[str, Callable] = {
    "grid": lambda u, v, f, p: np.minimum(_lines(u, f, p), _lines(v, f, p)),
    "diag_grid": lambda u, v, f, p: np.minimum(_lines((u + v) * _R2, f, p),
                                               _lines((u - v) * _R2, f, p)),
}


def _texture_content(sdfs: Dict[str, Callable]) -> ContentFn:
    table = list(sdfs.values())

    def draw(rng, class_index, n):
        f = g.sample_frames(rng, n, scale=(.85, 1.0), shift=.05, max_degrees=15)
        freq = _col(rng.uniform(1.5, 2.1, n))
        phase = _col(rng.rand(n))
        round_region = _col(rng.rand(n) < .5)
        region = np.where(round_region, g.circle_sdf(f.u, f.v, .88), g.box_sdf(f.u, f.v, .75, .75))
        return f.to_pixels(np.maximum(region, table[class_index](f.u, f.v, freq, phase)))
    return draw


textures_content = _texture_content(TEXTURE_SDFS)


# ---- counts --------------------------------------------------------------------------------

_CELLS = [(x, y) for y in (-.5, 0., .5) for x in (-.5, 0., .5)]


def counts_content(rng, class_index, n):
    count = class_index + 1
    f = g.sample_frames(rng, n, scale=(.82, .9), shift=.05, max_degrees=30)
    cells = np.argsort(rng.rand(n, len(_CELLS)), axis=1)[:, :count]
    best = None
    for j in range(count):
        cx = _col([_CELLS[c][0] for c in cells[:, j]]) + _col(rng.uniform(-.05, .05, n))
        cy = _col([_CELLS[c][1] for c in cells[:, j]]) + _col(rng.uniform(-.05, .05, n))
        size = _col(rng.uniform(.11, .15, n))
        disc = _col(rng.rand(n) < .5)
        d = np.where(disc, g.circle_sdf(f.u, f.v, size, cx, cy),
                     g.box_sdf(f.u, f.v, size * .85, size * .85, cx, cy))
        best = d if best is None else np.minimum(best, d)
    return f.to_pixels(best)


# ---- pretraining mixture -------------------------------------------------------------------

_letters = _stroke_content([LETTERS[k] for k in sorted(LETTERS)])
_pretrain_shapes = _shape_content(PRETRAIN_SHAPE_SDFS)
_pretrain_patterns = _texture_content(PRETRAIN_PATTERN_SDFS)
PRETRAIN_PARTS: List[tuple] = [
    (["letter_" + k for k in sorted(LETTERS)], _letters),
    (list(PRETRAIN_SHAPE_SDFS), _pretrain_shapes),
    (list(PRETRAIN_PATTERN_SDFS), _pretrain_patterns),
]


def pretrain_content(rng, class_index, n):
    for names, draw in PRETRAIN_PARTS:
        if class_index < len(names):
            return draw(rng, class_index, n)
        class_index -= len(names)
    raise IndexError(class_index)
