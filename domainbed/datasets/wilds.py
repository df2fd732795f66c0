"""WILDS datasets as DomainBed environments, read from the WILDS folders directly.

One environment per value of a metadata field (sorted); DomainBed's own in/out holdout
applies and the official WILDS splits are ignored, as upstream. The loader reads the
metadata CSV and the images itself, so the ``wilds`` package is not needed to train (its
folder layout is kept: ``<data_dir>/<name>_v<version>/``). Facts: UPSTREAM_API.md B.2, C.

- ``WILDSCamelyon``: field ``hospital`` (CSV column ``center``), 2 classes (``tumor``).
- ``WILDSFMoW``: field ``region`` (from ``country_code_mapping.csv``, numbered in order of
  first appearance in ``rgb_metadata.csv``), 62 classes; ``seq`` rows excluded.
- ``WILDSRxRx1``: field ``cell_type`` (4 domains; the paper does not say which field it
  used, ``experiment`` would give 51), 1139 classes (``sirna_id``).
- ``WILDSiWildCam``: field ``location`` (camera trap, CSV ``location_remapped``), classes
  ``max(y) + 1`` (182 in v2.0).
"""

import csv
import functools
import os
from typing import Dict, List, NamedTuple, Optional, Tuple

from domainbed.datasets import transforms as T
from domainbed.datasets.base import MultipleDomainDataset, register_dataset
from domainbed.datasets.image_folder import ImageEnvironment
from domainbed.errors import DataError

DOWNLOAD = "python -m domainbed.scripts.download --data_dir {root} --datasets {name}"

# FMoW's 62 categories, the label order of WILDS (alphabetical)
FMOW_CATEGORIES = (
    "airport", "airport_hangar", "airport_terminal", "amusement_park", "aquaculture",
    "archaeological_site", "barn", "border_checkpoint", "burial_site", "car_dealership",
    "construction_site", "crop_field", "dam", "debris_or_rubble", "educational_institution",
    "electric_substation", "factory_or_powerplant", "fire_station", "flooded_road", "fountain",
    "gas_station", "golf_course", "ground_transportation_station", "helipad", "hospital",
    "impoverished_settlement", "interchange", "lake_or_pond", "lighthouse",
    "military_facility", "multi-unit_residential", "nuclear_powerplant", "office_building",
    "oil_or_gas_facility", "park", "parking_lot_or_garage", "place_of_worship",
    "police_station", "port", "prison", "race_track", "railway_bridge",
    "recreational_facility", "road_bridge", "runway", "shipyard", "shopping_mall",
    "single-unit_residential", "smokestack", "solar_farm", "space_facility", "stadium",
    "storage_tank", "surface_mine", "swimming_pool", "toll_booth", "tower", "tunnel_opening",
    "waste_disposal", "water_treatment_facility", "wind_farm", "zoo")


class Example(NamedTuple):
    path: str  # relative to the dataset folder
    label: int
    domain: object  # sortable: an int index or a string


def read_csv(path: str) -> List[Dict[str, str]]:
    """The rows of a CSV file as dicts (a leading unnamed index column is kept as '')."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


class WILDSDataset(MultipleDomainDataset):
    """Subclasses set ``FOLDER``, ``METADATA``, ``DOMAIN_PREFIX``, ``N_CLASSES`` and
    ``examples(folder)``; environments are the sorted distinct domain values."""

    FOLDER = ""
    VERSION = ""
    METADATA = "metadata.csv"
    DOMAIN_PREFIX = ""  # environment name = prefix + value
    N_CLASSES: Optional[int] = None  # None: max(label) + 1
    INPUT_SHAPE = (3, 224, 224)
    CHECKPOINT_FREQ = 100
    N_WORKERS = 8
    DOWNLOAD_NAME = ""

    def __init__(self, root, test_envs, hparams):
        super().__init__()
        folder = self.dataset_dir(root)
        examples = self.cached_examples(folder)
        values = sorted({e.domain for e in examples})
        size, channels = T.image_geometry(hparams)
        augment = bool((hparams or {}).get("data_augmentation", True))
        self._eval_transform = T.eval_transform(size, channels)
        test_envs = set(test_envs or [])
        self.datasets, self._augmented = [], []
        for i, value in enumerate(values):
            samples = [(os.path.join(folder, e.path), e.label) for e in examples
                       if e.domain == value]
            augmented = augment and i not in test_envs
            transform = (T.train_transform(size, channels, resize_first=True) if augmented
                         else self._eval_transform)
            self.datasets.append(ImageEnvironment(samples, transform))
            self._augmented.append(augmented)
        self.ENVIRONMENTS = [self.DOMAIN_PREFIX + str(v) for v in values]
        self.input_shape = (channels, size, size)
        self.num_classes = self.N_CLASSES or max(e.label for e in examples) + 1

    def eval_view(self, index):
        if not self._augmented[index]:
            return self.datasets[index]
        return self.datasets[index].with_transform(self._eval_transform)

    @classmethod
    def dataset_dir(cls, root) -> str:
        """``<root>/<FOLDER>`` holding the metadata file, else a DataError naming the fix."""
        if root is None:
            raise DataError(f"{cls.__name__} reads images from disk: pass --data_dir")
        folder = os.path.join(root, cls.FOLDER)
        if not os.path.isfile(os.path.join(folder, cls.METADATA)):
            raise DataError(f"{cls.__name__}: {os.path.join(folder, cls.METADATA)!r} does not "
                            f"exist; download it with "
                            f"`{DOWNLOAD.format(root=root, name=cls.DOWNLOAD_NAME)}`")
        return folder

    @classmethod
    def environments(cls, root=None) -> List[str]:
        """The environment names: from the metadata when it is in ``root``, else the
        declared ones (e.g. to list a sweep before the data are downloaded)."""
        has_data = root is not None and os.path.isfile(
            os.path.join(root, cls.FOLDER, cls.METADATA))
        if not has_data and cls.ENVIRONMENTS is not None:
            return list(cls.ENVIRONMENTS)
        examples = cls.cached_examples(cls.dataset_dir(root))
        return [cls.DOMAIN_PREFIX + str(v) for v in sorted({e.domain for e in examples})]

    @classmethod
    def cached_examples(cls, folder: str) -> Tuple[Example, ...]:
        return _examples(cls, os.path.abspath(folder), os.path.getmtime(
            os.path.join(folder, cls.METADATA)))

    @classmethod
    def examples(cls, folder: str) -> List[Example]:
        raise NotImplementedError


@functools.lru_cache(maxsize=8)
def _examples(cls, folder: str, mtime: float) -> Tuple[Example, ...]:
    # a big metadata CSV is parsed once per process (environments() and the constructor)
    try:
        examples = tuple(cls.examples(folder))
    except (KeyError, ValueError) as exc:
        raise DataError(f"{cls.__name__}: {os.path.join(folder, cls.METADATA)} is not the "
                        f"expected metadata ({type(exc).__name__}: {exc}); download the "
                        "dataset again") from None
    if not examples:
        raise DataError(f"{cls.__name__}: {os.path.join(folder, cls.METADATA)} lists no images")
    return examples


def _int(value: str) -> int:
    return int(float(value))


@register_dataset(environments=("hospital_0", "hospital_1", "hospital_2", "hospital_3",
                                "hospital_4"), environments_from_data=True)
class WILDSCamelyon(WILDSDataset):
    FOLDER, VERSION, DOWNLOAD_NAME = "camelyon17_v1.0", "1.0", "WILDSCamelyon"
    DOMAIN_PREFIX = "hospital_"
    N_CLASSES = 2

    @classmethod
    def examples(cls, folder):
        out = []
        for row in read_csv(os.path.join(folder, cls.METADATA)):
            p, n, x, y = (_int(row[k]) for k in ("patient", "node", "x_coord", "y_coord"))
            path = (f"patches/patient_{p:03d}_node_{n}/"
                    f"patch_patient_{p:03d}_node_{n}_x_{x}_y_{y}.png")
            out.append(Example(path, _int(row["tumor"]), _int(row["center"])))
        return out


@register_dataset(environments=("region_0", "region_1", "region_2", "region_3", "region_4",
                                "region_5"), environments_from_data=True)
class WILDSFMoW(WILDSDataset):
    FOLDER, VERSION, DOWNLOAD_NAME = "fmow_v1.1", "1.1", "WILDSFMoW"
    METADATA = "rgb_metadata.csv"
    DOMAIN_PREFIX = "region_"
    N_CLASSES = len(FMOW_CATEGORIES)

    @classmethod
    def examples(cls, folder):
        mapping = {row["alpha-3"]: row["region"] for row in
                   read_csv(os.path.join(folder, "country_code_mapping.csv"))}
        rows = read_csv(os.path.join(folder, cls.METADATA))
        regions: Dict[str, int] = {}
        for row in rows:  # region indices in order of first appearance
            regions.setdefault(mapping.get(row["country_code"], "Other") or "Other",
                               len(regions))
        out = []
        for index, row in enumerate(rows):
            if row["split"] == "seq":
                continue
            if row["category"] not in FMOW_CATEGORIES:
                raise ValueError(f"unknown category {row['category']!r}")
            region = regions[mapping.get(row["country_code"], "Other") or "Other"]
            out.append(Example(f"images/rgb_img_{index}.png",
                               FMOW_CATEGORIES.index(row["category"]), region))
        return out


@register_dataset(environments=("HEPG2", "HUVEC", "RPE", "U2OS"), environments_from_data=True)
class WILDSRxRx1(WILDSDataset):
    FOLDER, VERSION, DOWNLOAD_NAME = "rxrx1_v1.0", "1.0", "WILDSRxRx1"
    N_CLASSES = 1139

    @classmethod
    def examples(cls, folder):
        return [Example(f"images/{row['experiment']}/Plate{_int(row['plate'])}/"
                        f"{row['well']}_s{_int(row['site'])}.png",
                        _int(row["sirna_id"]), row["cell_type"])
                for row in read_csv(os.path.join(folder, cls.METADATA))]


@register_dataset(environments_from_data=True)  # one per camera trap: read from the metadata
class WILDSiWildCam(WILDSDataset):
    FOLDER, VERSION, DOWNLOAD_NAME = "iwildcam_v2.0", "2.0", "WILDSiWildCam"
    DOMAIN_PREFIX = "location_"

    @classmethod
    def examples(cls, folder):
        return [Example(f"train/{row['filename']}", _int(row["y"]),
                        _int(row["location_remapped"]))
                for row in read_csv(os.path.join(folder, cls.METADATA))]
