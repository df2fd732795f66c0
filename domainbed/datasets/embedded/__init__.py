"""The embedded benchmark: small multi-domain 32x32 datasets that the package draws itself.

Five target datasets with their own label sets and domain styles, plus a larger
pretraining dataset for the shared "foundation" featurizer, so that the whole ratatouille
recipe runs offline on a laptop CPU. See docs/embedded_benchmark.md. A dataset's domain
styles are its environments, declared where it registers (``specs`` reads them from the
registry's index).
"""

from domainbed.datasets.base import register_dataset
from domainbed.datasets.embedded.cache import CACHE_ENV_VAR, cache_dir, cache_path, load_or_generate
from domainbed.datasets.embedded.dataset import PIXEL_MEAN, PIXEL_STD, EmbeddedDataset
from domainbed.datasets.embedded.specs import GENERATOR_VERSION, SPECS, generate


@register_dataset(environments=("photo", "cartoon", "sketch", "painting"))
class EmbeddedShapes(EmbeddedDataset):
    """7 geometric shapes in photo, cartoon, sketch and painting styles."""


@register_dataset(environments=("photo", "sketch", "neon", "mosaic"))
class EmbeddedGlyphs(EmbeddedDataset):
    """10 hand-jittered stroke digits in photo, sketch, neon and mosaic styles."""


@register_dataset(environments=("cartoon", "painting", "neon", "clutter"))
class EmbeddedArrows(EmbeddedDataset):
    """8 arrow directions in cartoon, painting, neon and clutter styles."""


@register_dataset(environments=("photo", "sketch", "mosaic", "clutter"))
class EmbeddedTextures(EmbeddedDataset):
    """7 texture patterns in photo, sketch, mosaic and clutter styles."""


@register_dataset(environments=("cartoon", "painting", "neon", "mosaic"))
class EmbeddedCounts(EmbeddedDataset):
    """How many objects (1 to 5) in cartoon, painting, neon and mosaic styles."""


@register_dataset(environments=("plain", "stipple"))
class EmbeddedPretrain(EmbeddedDataset):
    """36 classes (letters, other shapes, grids) in the plain and stipple styles, which no
    target dataset uses: the pretraining task."""
    N_STEPS = 1001
    CHECKPOINT_FREQ = 200


def save_preview(path, names=None, per_domain=8, scale=2):
    """Write a PNG grid of the datasets' domains; see ``embedded.preview.save_preview``."""
    from domainbed.datasets.embedded.preview import save_preview as _save
    return _save(path, names, per_domain, scale)


EMBEDDED_TARGET_FAMILY = ["EmbeddedShapes", "EmbeddedGlyphs", "EmbeddedArrows",
                          "EmbeddedTextures", "EmbeddedCounts"]
EMBEDDED_PRETRAIN = "EmbeddedPretrain"

__all__ = ["CACHE_ENV_VAR", "EMBEDDED_PRETRAIN", "EMBEDDED_TARGET_FAMILY", "GENERATOR_VERSION",
           "PIXEL_MEAN", "PIXEL_STD", "SPECS", "EmbeddedDataset", "cache_dir", "cache_path",
           "generate", "load_or_generate", "save_preview", *EMBEDDED_TARGET_FAMILY,
           EMBEDDED_PRETRAIN]
