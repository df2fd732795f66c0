"""SVIRO: synthetic vehicle-interior rear-seat images, one domain per vehicle model.

Layout ``<data_dir>/sviro/<vehicle>/<class>/<image>`` (DomainBed's ``SVIRO_DOMAINBED``
archive, greyscale images read as RGB unless ``image_channels`` is 1).
"""

from domainbed.datasets.base import register_dataset
from domainbed.datasets.image_folder import MultipleEnvironmentImageFolder


@register_dataset(environments=("aclass", "escape", "hilux", "i3", "lexus", "tesla", "tiguan",
                                "tucson", "x5", "zoe"))
class SVIRO(MultipleEnvironmentImageFolder):
    SUBDIR = "sviro"
    DOWNLOAD_NAME = "SVIRO"
    CHECKPOINT_FREQ = 300
