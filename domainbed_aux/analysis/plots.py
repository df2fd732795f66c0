"""Figures of the analyses, styled like the paper's: labelled axes, a legend, a title.

matplotlib is optional: :func:`matplotlib_available` tells whether plots can be drawn, and
every function imports it lazily. Figures are drawn on ``matplotlib.figure.Figure`` objects
(no pyplot global state) and returned, so callers and tests can inspect their axes.
"""

import math
from typing import Dict, Optional, Sequence, Tuple

from domainbed.errors import DomainBedError


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(size: Tuple[float, float] = (5.0, 3.6)):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise DomainBedError("plots need matplotlib: pip install matplotlib "
                             "(or install the 'plots' extra)") from None
    fig = Figure(figsize=size, dpi=120)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig, path: Optional[str]) -> None:
    if path:
        fig.tight_layout()
        fig.savefig(path)


def _percent(values: Sequence[Optional[float]]):
    return [100.0 * v if v is not None else math.nan for v in values]


def plot_curves(x: Sequence[float], curves: Dict[str, Sequence[Optional[float]]], *,
                xlabel: str, ylabel: str, title: str, path: Optional[str] = None,
                percent: bool = True, markers: bool = True):
    """One line per ``curves`` entry (label -> y values over ``x``); returns the Figure.

    Accuracies in [0, 1] are drawn in percent when ``percent``.
    """
    fig, ax = _figure()
    for label, ys in curves.items():
        ys = _percent(ys) if percent else [math.nan if v is None else v for v in ys]
        ax.plot(list(x), ys, marker="o" if markers else None, markersize=3.5, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    _save(fig, path)
    return fig


def plot_simplex(points: Sequence[Sequence[float]], values: Sequence[float],
                 corner_labels: Sequence[str], *, title: str, colorbar_label: str,
                 path: Optional[str] = None):
    """A triangle heatmap over the simplex of three models; returns the Figure.

    ``points`` are barycentric coefficients ``(w_a, w_b, w_c)``; corner a is bottom left,
    b bottom right, c on top.
    """
    fig, ax = _figure((5.0, 4.4))
    corners = [(0.0, 0.0), (1.0, 0.0), (0.5, math.sqrt(3) / 2)]
    xs = [sum(w * c[0] for w, c in zip(p, corners)) for p in points]
    ys = [sum(w * c[1] for w, c in zip(p, corners)) for p in points]
    scatter = ax.scatter(xs, ys, c=_percent(values), cmap="viridis", s=60, marker="h",
                         label="interpolated model")
    fig.colorbar(scatter, ax=ax, label=colorbar_label)
    for (cx, cy), label in zip(corners, corner_labels):
        ax.annotate(label, (cx, cy), textcoords="offset points",
                    xytext=(0, 8 if cy > 0 else -14), ha="center", fontsize="small")
    ax.plot([0, 1, 0.5, 0], [0, 0, math.sqrt(3) / 2, 0], color="grey", lw=0.8,
            label="simplex edges")
    ax.set_xlabel("barycentric x (model b weight + c weight / 2)")
    ax.set_ylabel("barycentric y (model c weight x sqrt(3)/2)")
    ax.set_title(title)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize="x-small")
    _save(fig, path)
    return fig


def plot_matrix(matrix: Sequence[Sequence[Optional[float]]], labels: Sequence[str], *,
                title: str, colorbar_label: str, path: Optional[str] = None):
    """A heatmap of a pairwise matrix (None cells blank); returns the Figure."""
    fig, ax = _figure((5.0, 4.4))
    values = [[math.nan if v is None or (isinstance(v, float) and math.isinf(v)) else v
               for v in row] for row in matrix]
    image = ax.imshow(values, cmap="magma")
    fig.colorbar(image, ax=ax, label=colorbar_label)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize="x-small")
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize="x-small")
    ax.set_xlabel("run")
    ax.set_ylabel("run")
    ax.set_title(title)
    _save(fig, path)
    return fig


def plot_pairwise(matrices: Dict[str, Sequence[Sequence[Optional[float]]]],
                  labels: Sequence[str], *, title: str, path: Optional[str] = None):
    """One heatmap per entry of ``matrices`` (name -> square matrix over ``labels``), side
    by side, each value written in its cell; returns the Figure."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise DomainBedError("plots need matplotlib: pip install matplotlib "
                             "(or install the 'plots' extra)") from None
    n = len(labels)
    side = max(3.2, 0.45 * n + 1.8)
    fig = Figure(figsize=(side * len(matrices), side), dpi=120)
    short = [lab if len(lab) <= 14 else "..." + lab[-11:] for lab in labels]
    for i, (name, matrix) in enumerate(matrices.items()):
        ax = fig.add_subplot(1, len(matrices), i + 1)
        values = [[math.nan if v is None else float(v) for v in row] for row in matrix]
        image = ax.imshow(values, cmap="viridis")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.set_xticklabels(short, rotation=60, ha="right", fontsize="x-small")
        ax.set_yticklabels(short, fontsize="x-small")
        if n <= 12:
            for r in range(n):
                for c in range(n):
                    if not math.isnan(values[r][c]):
                        ax.text(c, r, f"{values[r][c]:.2g}", ha="center", va="center",
                                fontsize="xx-small", color="white")
        ax.set_title(name, fontsize="small")
    fig.suptitle(title, fontsize="small")
    _save(fig, path)
    return fig
