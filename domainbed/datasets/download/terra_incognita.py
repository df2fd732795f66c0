"""TerraIncognita: the Caltech Camera Traps images and annotations from LILA, laid out as
``location_<N>/<category>/<image>`` for the four locations of the dataset class."""

import json
import logging
import os
import shutil
from typing import Dict, List, Sequence

from domainbed.datasets.download.install import DownloadJob, check_layout, find_folder
from domainbed.datasets.download.registry import register_download
from domainbed.datasets.image_folder import TerraIncognita
from domainbed.errors import DataError
from domainbed.lib.archives import extract_archive
from domainbed.lib.fetch import Source

log = logging.getLogger("domainbed.download")

LILA_MIRRORS = (
    "https://storage.googleapis.com/public-datasets-lila/",
    "https://lilablobssc.blob.core.windows.net/",
)
TERRA_IMAGES_PATH = "caltechcameratraps/eccv_18_all_images_sm.tar.gz"
TERRA_ANNOTATIONS_PATH = "caltechcameratraps/labels/caltech_camera_traps.json.zip"
LOCATION_PREFIX = "location_"
# the camera-trap locations of the dataset class's domain folders (location_<N>)
TERRA_LOCATIONS = tuple(folder[len(LOCATION_PREFIX):]
                        for folder in TerraIncognita.environment_folders())
TERRA_CATEGORIES = ("bird", "bobcat", "cat", "coyote", "dog", "empty", "opossum", "rabbit",
                    "raccoon", "squirrel")


def lila(filename: str, path: str) -> Source:
    return Source(filename, urls=tuple(m + path for m in LILA_MIRRORS))


def organize_terra_incognita(images_dir: str, annotations_path: str, out_dir: str,
                             locations: Sequence[str] = TERRA_LOCATIONS,
                             categories: Sequence[str] = TERRA_CATEGORIES) -> Dict[str, int]:
    """Lay out the kept images as ``out_dir/location_<N>/<category>/<file>``.

    Reads a COCO Camera Traps JSON (``images`` with ``id``, ``file_name``, ``location``;
    ``annotations`` with ``image_id``, ``category_id``; ``categories`` with ``id``,
    ``name``). An image with annotations in several kept categories goes into each. Images
    are moved (copied for their second and later categories). Returns counts per location.
    """
    with open(annotations_path, encoding="utf-8") as f:
        data = json.load(f)
    names = {c["id"]: c["name"] for c in data["categories"]}
    by_image: Dict[object, List[str]] = {}
    for ann in data["annotations"]:
        name = names.get(ann.get("category_id"))
        if name in categories:
            kept = by_image.setdefault(ann["image_id"], [])
            if name not in kept:
                kept.append(name)
    locations = {str(loc) for loc in locations}
    counts = {f"{LOCATION_PREFIX}{loc}": 0 for loc in sorted(locations)}
    missing = 0
    for image in data["images"]:
        location = str(image.get("location"))
        if location not in locations or image["id"] not in by_image:
            continue
        filename = os.path.basename(image.get("file_name") or f"{image['id']}.jpg")
        source = os.path.join(images_dir, filename)
        if not os.path.isfile(source):
            missing += 1
            continue
        for k, category in enumerate(by_image[image["id"]]):
            target_dir = os.path.join(out_dir, f"{LOCATION_PREFIX}{location}", category)
            os.makedirs(target_dir, exist_ok=True)
            target = os.path.join(target_dir, filename)
            last = k == len(by_image[image["id"]]) - 1
            (shutil.move if last else shutil.copy2)(source, target)
        counts[f"{LOCATION_PREFIX}{location}"] += 1
    if missing:
        log.warning("TerraIncognita: %d annotated images missing from %s", missing, images_dir)
    return counts


def _one_json(folder: str, archive_name: str) -> str:
    found = sorted(os.path.join(d, f) for d, _, files in os.walk(folder)
                   for f in files if f.endswith(".json"))
    if len(found) != 1:
        raise DataError(f"TerraIncognita: expected one JSON file in {archive_name}, "
                        f"found {len(found)}")
    return found[0]


@register_download("TerraIncognita", TerraIncognita.SUBDIR)
def prepare_terra_incognita(job: DownloadJob) -> str:
    subdir = TerraIncognita.SUBDIR
    sources = [lila("terra_incognita_images.tar.gz", TERRA_IMAGES_PATH),
               lila("caltech_camera_traps.json.zip", TERRA_ANNOTATIONS_PATH)]
    images_archive, annotations_archive = [job.fetch(s) for s in sources]
    staging = job.staging(subdir)
    extract_archive(images_archive, os.path.join(staging, "images"))
    extract_archive(annotations_archive, os.path.join(staging, "annotations"))
    images_dir = find_folder(os.path.join(staging, "images"), "eccv_18_all_images_sm")
    annotations = _one_json(os.path.join(staging, "annotations"), sources[1].filename)
    folder = os.path.join(staging, subdir)
    counts = organize_terra_incognita(images_dir, annotations, folder)
    log.info("TerraIncognita: images per location %s", counts)
    check_layout(folder, "TerraIncognita")
    target = job.install(folder, subdir, "TerraIncognita", sources,
                         [images_archive, annotations_archive])
    shutil.rmtree(staging, ignore_errors=True)
    return target
