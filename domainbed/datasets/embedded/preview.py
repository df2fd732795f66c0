"""A PNG grid of the embedded datasets: one row per (dataset, domain), a few images each
(the command: ``python -m domainbed.scripts.embedded_preview docs/embedded_preview.png``).
"""

import io
from typing import Optional, Sequence

import numpy as np

from domainbed.datasets.embedded.specs import SPECS, get_spec, render_domain
from domainbed.lib.misc import atomic_write_bytes

_LABEL_WIDTH = 150


def _label_line(labels: Sequence[str], width: int = 24) -> str:
    """The labels of the first images, as many as fit in ``width`` characters."""
    line = labels[0]
    for label in labels[1:]:
        if len(line) + len(label) + 6 > width:
            break
        line += ", " + label
    return line + ", ..."


def preview_image(names: Optional[Sequence[str]] = None, per_domain: int = 8, scale: int = 2):
    """A Pillow image: rows = every domain of every dataset, columns = its first images."""
    from PIL import Image, ImageDraw

    names = list(names or SPECS)
    tile = 32 * scale
    rows = [(name, i) for name in names for i in range(len(get_spec(name).domains))]
    sheet = Image.new("RGB", (_LABEL_WIDTH + per_domain * tile, len(rows) * tile), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, i) in enumerate(rows):
        spec = SPECS[name]
        x, y = render_domain(spec, i)
        for k in range(min(per_domain, len(x))):
            img = Image.fromarray(np.ascontiguousarray(x[k].transpose(1, 2, 0)))
            sheet.paste(img.resize((tile, tile), Image.NEAREST),
                        (_LABEL_WIDTH + k * tile, r * tile))
        label = f"{name[len('Embedded'):]} / {spec.domains[i]}"
        draw.text((4, r * tile + tile // 2 - 12), label, fill="black")
        draw.text((4, r * tile + tile // 2 + 2), _label_line([spec.classes[int(c)] for c in y]),
                  fill="gray")
    return sheet


def save_preview(path: str, names: Optional[Sequence[str]] = None, per_domain: int = 8,
                 scale: int = 2) -> str:
    """Write the preview grid of ``names`` (default: all embedded datasets) as a PNG at ``path``."""
    buffer = io.BytesIO()
    preview_image(names, per_domain, scale).save(buffer, format="PNG", optimize=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path
