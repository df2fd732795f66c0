"""Download the benchmark datasets and lay them out as the dataset classes read them.

    python -m domainbed.scripts.download --data_dir DIR [--datasets NAME [NAME ...]]

Each dataset is fetched into ``DIR/downloads/`` (resumable ``.part`` files, retries with
backoff), checked, extracted into a staging folder, reorganised, and moved into place with a
completion marker; a dataset whose folder already exists is skipped, so the command can be
re-run after any interruption.
"""

import argparse
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from domainbed.errors import DataError, DomainBedError
from domainbed.lib.archives import extract_archive, is_inside
from domainbed.lib.fetch import Fetcher, Source
from domainbed.lib.misc import atomic_write_text
from domainbed.registry import Registry

log = logging.getLogger("domainbed.download")

# ---------------------------------------------------------------------------------------
# Sources (facts). No checksum is published for these files, so none is checked; a Source
# takes a sha256 where one becomes known.

DOMAINNET_URL = "http://csr.bu.edu/ftp/visda/2019/multi-source/"
LILA_MIRRORS = (
    "https://storage.googleapis.com/public-datasets-lila/",
    "https://lilablobssc.blob.core.windows.net/",
)
TERRA_IMAGES_PATH = "caltechcameratraps/eccv_18_all_images_sm.tar.gz"
TERRA_ANNOTATIONS_PATH = "caltechcameratraps/labels/caltech_camera_traps.json.zip"
TERRA_LOCATIONS = ("38", "43", "46", "100")
TERRA_CATEGORIES = ("bird", "bobcat", "cat", "coyote", "dog", "empty", "opossum", "rabbit",
                    "raccoon", "squirrel")
DOMAINNET_DOMAINS = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
DOMAINNET_GROUNDTRUTH = ("clipart", "painting")  # these two come from groundtruth/

# DomainNet's duplicate files (9,431 paths relative to domain_net/, a fact list from the
# dataset's maintainers), shipped with the package and removed by default
DOMAINNET_DUPLICATES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                                         "domain_net_duplicates.txt")
SVIRO_URL = "https://sviro.kl.dfki.de/?wpdmdl=1731"
SPAWRIOUS_URL = "https://www.dropbox.com/s/e40j553480h3f3s/spawrious224.tar.gz?dl=1"
# the codalab bundles that wilds' own downloader fetches: dataset -> (folder, version,
# bundle, size in bytes as wilds lists it; informative only, not checked)
CODALAB_URL = "https://worksheets.codalab.org/rest/bundles/{bundle}/contents/blob/"
WILDS_BUNDLES = {
    "WILDSCamelyon": ("camelyon17_v1.0", "1.0", "0xe45e15f39fb54e9d9e919556af67aabe",
                      10_658_709_504),
    "WILDSFMoW": ("fmow_v1.1", "1.1", "0xaec91eb7c9d548ebb15e1b5e60f966ab", 53_893_324_800),
    "WILDSRxRx1": ("rxrx1_v1.0", "1.0", "0x6b7a05a3056a434498f0bb1252eb8440", 7_413_123_845),
    "WILDSiWildCam": ("iwildcam_v2.0", "2.0", "0x6313da2b204647e79a14b468131fcd64",
                      11_957_420_032),
}

MARKER = ".domainbed_download.json"


def gdrive(filename: str, file_id: str) -> Source:
    return Source(filename, gdrive_id=file_id)


def lila(filename: str, path: str) -> Source:
    return Source(filename, urls=tuple(m + path for m in LILA_MIRRORS))


# ---------------------------------------------------------------------------------------
# Archives and layout


def shipped_domainnet_duplicates() -> Tuple[str, ...]:
    """The shipped DomainNet duplicate list (paths relative to ``domain_net/``)."""
    return tuple(read_file_list(DOMAINNET_DUPLICATES_FILE, strip_prefix="domain_net/"))


def drop_listed_files(root: str, relpaths: Iterable[str]) -> int:
    """Delete the files ``relpaths`` (relative to ``root``); returns how many existed."""
    removed = 0
    for rel in relpaths:
        if not is_inside(root, rel):
            raise DataError(f"duplicate list entry {rel!r} points outside {root}")
        path = os.path.join(root, rel)
        if os.path.isfile(path):
            os.remove(path)
            removed += 1
    return removed


def read_file_list(path: str, strip_prefix: str = "") -> List[str]:
    """Paths listed one per line in ``path`` (blank lines and ``#`` comments skipped)."""
    entries = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if strip_prefix and line.startswith(strip_prefix):
                line = line[len(strip_prefix):]
            entries.append(line)
    return entries


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
    counts = {f"location_{loc}": 0 for loc in sorted(locations)}
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
            target_dir = os.path.join(out_dir, f"location_{location}", category)
            os.makedirs(target_dir, exist_ok=True)
            target = os.path.join(target_dir, filename)
            last = k == len(by_image[image["id"]]) - 1
            (shutil.move if last else shutil.copy2)(source, target)
        counts[f"location_{location}"] += 1
    if missing:
        log.warning("TerraIncognita: %d annotated images missing from %s", missing, images_dir)
    return counts


def _find_folder(root: str, name: str) -> str:
    """``root/name`` or ``root/<one folder>/name``."""
    for candidate in [os.path.join(root, name)] + [
            os.path.join(root, d, name) for d in sorted(os.listdir(root))]:
        if os.path.isdir(candidate):
            return candidate
    raise DataError(f"the archive has no folder {name!r} (found {sorted(os.listdir(root))})")


def _check_layout(folder: str, dataset: str) -> None:
    from domainbed.datasets import get_dataset_class
    environments = get_dataset_class(dataset).environment_folders()  # folder names
    missing = [e for e in environments if not os.path.isdir(os.path.join(folder, e))]
    if missing:
        raise DataError(f"{dataset}: the downloaded data lack the domain folder(s) {missing} "
                        f"(found {sorted(os.listdir(folder))})")


# ---------------------------------------------------------------------------------------
# Datasets


class Job:
    """Where one dataset is downloaded, staged and installed inside ``data_dir``."""

    def __init__(self, data_dir: str, fetcher: Fetcher, keep_archives: bool = False,
                 duplicates: Optional[Sequence[str]] = None):
        self.data_dir = data_dir
        self.fetcher = fetcher
        self.keep_archives = keep_archives
        self.duplicates = tuple(shipped_domainnet_duplicates() if duplicates is None
                                else duplicates)
        self.downloads = os.path.join(data_dir, "downloads")

    def fetch(self, source: Source) -> str:
        return self.fetcher.fetch_source(source, self.downloads)

    def staging(self, name: str) -> str:
        """A fresh staging folder (removing a previous run's leftovers)."""
        path = os.path.join(self.data_dir, f".{name}.partial")
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        return path

    def install(self, folder: str, subdir: str, dataset: str, sources: Sequence[Source],
                archives: Sequence[str] = ()) -> str:
        """Mark ``folder`` complete and move it to ``data_dir/subdir``."""
        write_marker(folder, dataset, sources)
        target = os.path.join(self.data_dir, subdir)
        os.replace(folder, target)
        if not self.keep_archives:
            for archive in archives:
                os.remove(archive)
        return target


def write_marker(folder: str, dataset: str, sources: Sequence[Source]) -> None:
    record = {"dataset": dataset,
              "sources": [s.gdrive_id and f"gdrive:{s.gdrive_id}" or s.urls[0] for s in sources],
              "completed": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write_text(os.path.join(folder, MARKER), json.dumps(record, indent=1) + "\n")


@dataclass(frozen=True)
class DownloadSpec:
    """A downloadable dataset: its folder in ``data_dir`` and how to prepare it."""

    name: str
    subdir: str
    prepare: Callable[[Job], str]


DOWNLOADS: Registry = Registry("downloadable dataset")


def register_download(name: str, subdir: str):
    def decorator(prepare):
        DOWNLOADS.register(name)(DownloadSpec(name, subdir, prepare))
        return prepare
    return decorator


def _archive_dataset(job: Job, dataset: str, subdir: str, source: Source, inner: str) -> str:
    archive = job.fetch(source)
    staging = job.staging(subdir)
    extract_archive(archive, staging)
    folder = _find_folder(staging, inner)
    _check_layout(folder, dataset)
    target = job.install(folder, subdir, dataset, [source], [archive])
    shutil.rmtree(staging, ignore_errors=True)
    return target


PACS_SOURCE = gdrive("PACS.zip", "1JFr8f805nMUelQWWmfnJR3y4_SYoN5Pd")
OFFICE_HOME_SOURCE = gdrive("office_home.zip", "1uY0pj7oFsjMxRwaD3Sxy0jgel0fsYXLC")
VLCS_SOURCE = gdrive("VLCS.tar.gz", "1skwblH1_okBwxWxmRsp9_qi15hyPpxg8")


@register_download("MNIST", "MNIST")
def prepare_mnist(job: Job) -> str:
    """MNIST through torchvision (its own mirrors and checksums) into ``data_dir/MNIST``."""
    from torchvision.datasets import MNIST

    from domainbed.datasets.mnist import load_mnist
    for train in (True, False):
        try:
            MNIST(job.data_dir, train=train, download=True)
        except (OSError, RuntimeError) as exc:
            raise DataError(f"MNIST download failed ({exc}); run the command again") from exc
    load_mnist(job.data_dir)  # checks the files parse
    folder = os.path.join(job.data_dir, "MNIST")
    write_marker(folder, "MNIST", [Source("MNIST", urls=("torchvision",))])
    return folder


@register_download("PACS", "PACS")
def prepare_pacs(job: Job) -> str:
    return _archive_dataset(job, "PACS", "PACS", PACS_SOURCE, "kfold")


@register_download("OfficeHome", "office_home")
def prepare_office_home(job: Job) -> str:
    return _archive_dataset(job, "OfficeHome", "office_home", OFFICE_HOME_SOURCE,
                            "OfficeHomeDataset_10072016")


@register_download("VLCS", "VLCS")
def prepare_vlcs(job: Job) -> str:
    return _archive_dataset(job, "VLCS", "VLCS", VLCS_SOURCE, "VLCS")


def domainnet_sources() -> List[Source]:
    return [Source(f"domainnet_{d}.zip", urls=(
        DOMAINNET_URL + ("groundtruth/" if d in DOMAINNET_GROUNDTRUTH else "") + f"{d}.zip",))
        for d in DOMAINNET_DOMAINS]


@register_download("DomainNet", "domain_net")
def prepare_domainnet(job: Job) -> str:
    sources = domainnet_sources()
    archives = [job.fetch(s) for s in sources]
    staging = job.staging("domain_net")
    folder = os.path.join(staging, "domain_net")
    for archive in archives:
        extract_archive(archive, folder)
    _check_layout(folder, "DomainNet")
    if job.duplicates:
        removed = drop_listed_files(folder, job.duplicates)
        log.info("DomainNet: removed %d of %d listed duplicate files", removed, len(job.duplicates))
    else:
        log.warning("DomainNet: duplicate files are kept (--keep_domainnet_duplicates)")
    target = job.install(folder, "domain_net", "DomainNet", sources, archives)
    shutil.rmtree(staging, ignore_errors=True)
    return target


@register_download("TerraIncognita", "terra_incognita")
def prepare_terra_incognita(job: Job) -> str:
    sources = [lila("terra_incognita_images.tar.gz", TERRA_IMAGES_PATH),
               lila("caltech_camera_traps.json.zip", TERRA_ANNOTATIONS_PATH)]
    images_archive, annotations_archive = [job.fetch(s) for s in sources]
    staging = job.staging("terra_incognita")
    extract_archive(images_archive, os.path.join(staging, "images"))
    extract_archive(annotations_archive, os.path.join(staging, "annotations"))
    images_dir = _find_folder(os.path.join(staging, "images"), "eccv_18_all_images_sm")
    annotation_files = sorted(
        os.path.join(d, f) for d, _, files in os.walk(os.path.join(staging, "annotations"))
        for f in files if f.endswith(".json"))
    if len(annotation_files) != 1:
        raise DataError(f"TerraIncognita: expected one JSON file in {sources[1].filename}, "
                        f"found {len(annotation_files)}")
    folder = os.path.join(staging, "terra_incognita")
    counts = organize_terra_incognita(images_dir, annotation_files[0], folder)
    log.info("TerraIncognita: images per location %s", counts)
    _check_layout(folder, "TerraIncognita")
    target = job.install(folder, "terra_incognita", "TerraIncognita", sources,
                         [images_archive, annotations_archive])
    shutil.rmtree(staging, ignore_errors=True)
    return target


@register_download("SVIRO", "sviro")
def prepare_sviro(job: Job) -> str:
    return _archive_dataset(job, "SVIRO", "sviro",
                            Source("sviro_grayscale_rectangle_classification.zip",
                                   urls=(SVIRO_URL,)), "SVIRO_DOMAINBED")


@register_download("Spawrious", "spawrious224")
def prepare_spawrious(job: Job) -> str:
    """Spawrious's entire dataset: ``spawrious224/{0,1,domain_adaptation_ds}/...``."""
    source = Source("spawrious224.tar.gz", urls=(SPAWRIOUS_URL,))
    archive = job.fetch(source)
    staging = job.staging("spawrious224")
    extract_archive(archive, staging)
    folder = _find_folder(staging, "spawrious224")
    missing = [c for c in ("0", "1") if not os.path.isdir(os.path.join(folder, c))]
    if missing:
        raise DataError(f"Spawrious: the archive lacks the folder(s) {missing} "
                        f"(found {sorted(os.listdir(folder))})")
    target = job.install(folder, "spawrious224", "Spawrious", [source], [archive])
    shutil.rmtree(staging, ignore_errors=True)
    return target


def wilds_source(dataset: str) -> Source:
    folder, _, bundle, _ = WILDS_BUNDLES[dataset]
    return Source(f"{folder}.tar.gz", urls=(CODALAB_URL.format(bundle=bundle),))


def _metadata_folder(staging: str, folder: str, metadata: str) -> str:
    """The extracted folder holding ``metadata``: the archive's top or ``folder`` in it."""
    for candidate in (staging, os.path.join(staging, folder)):
        if os.path.isfile(os.path.join(candidate, metadata)):
            return candidate
    raise DataError(f"the archive has no {metadata} at its top or in {folder}/ "
                    f"(found {sorted(os.listdir(staging))})")


def prepare_wilds(job: Job, dataset: str) -> str:
    """A WILDS dataset into ``data_dir/<name>_v<version>/`` (wilds' own layout and release
    marker, so the wilds package accepts the folder too); its metadata is checked."""
    from domainbed.datasets import get_dataset_class
    folder, version, _, size = WILDS_BUNDLES[dataset]
    source = wilds_source(dataset)
    log.info("%s: about %.1f GB from codalab", dataset, size / 1e9)
    archive = job.fetch(source)
    staging = job.staging(folder)
    extract_archive(archive, staging)
    cls = get_dataset_class(dataset)
    found = _metadata_folder(staging, folder, cls.METADATA)
    get_dataset_class(dataset).cached_examples(found)  # the metadata parse (DataError if not)
    marker = os.path.join(found, f"RELEASE_v{version}.txt")
    if not os.path.exists(marker):
        atomic_write_text(marker, f"{dataset} v{version}\n")
    if found == staging:  # the archive held the folder's contents
        inner = os.path.join(staging, folder)
        os.makedirs(inner)
        for name in os.listdir(staging):
            if name != folder:
                os.replace(os.path.join(staging, name), os.path.join(inner, name))
        found = inner
    target = job.install(found, folder, dataset, [source], [archive])
    shutil.rmtree(staging, ignore_errors=True)
    return target


for _name, (_folder, *_) in WILDS_BUNDLES.items():
    register_download(_name, _folder)(lambda job, _n=_name: prepare_wilds(job, _n))


ALIASES = {"RotatedMNIST": "MNIST", "ColoredMNIST": "MNIST",
           **{f"Spawrious{kind}_{level}": "Spawrious" for kind in ("O2O", "M2M")
              for level in ("easy", "medium", "hard")}}


def download_datasets(data_dir: str, datasets: Optional[Sequence[str]] = None,
                      fetcher: Optional[Fetcher] = None, keep_archives: bool = False,
                      duplicates: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """Download and install ``datasets`` (default: all) under ``data_dir``.

    Returns ``name -> "done" | "skipped" | error message``; one failure does not stop the
    others. A dataset whose folder exists is skipped (with its marker: finished here;
    without: someone else's copy, left untouched). ``duplicates``: DomainNet files to drop
    (None: the shipped list).
    """
    names = list(dict.fromkeys(ALIASES.get(n, n) for n in (datasets or DOWNLOADS.names())))
    for name in names:
        DOWNLOADS.get(name)  # unknown names fail before any download
    os.makedirs(data_dir, exist_ok=True)
    job = Job(data_dir, fetcher or Fetcher(), keep_archives, duplicates)
    outcome = {}
    for name in names:
        spec = DOWNLOADS.get(name)
        target = os.path.join(data_dir, spec.subdir)
        if os.path.exists(os.path.join(target, MARKER)):
            log.info("%s: already downloaded in %s", name, target)
            outcome[name] = "skipped"
            continue
        if os.path.isdir(target) and name != "MNIST":
            log.warning("%s: %s exists but was not written by this command; leaving it "
                        "untouched (delete it to download again)", name, target)
            outcome[name] = "skipped"
            continue
        log.info("%s: downloading into %s", name, target)
        try:
            spec.prepare(job)
        except DomainBedError as exc:
            log.error("%s: %s", name, exc)
            outcome[name] = str(exc)
            continue
        log.info("%s: done", name)
        outcome[name] = "done"
    return outcome


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--datasets", nargs="+", metavar="NAME",
                        choices=DOWNLOADS.names() + list(ALIASES),
                        help=f"default: all of {', '.join(DOWNLOADS.names())}")
    parser.add_argument("--keep_archives", action="store_true",
                        help="keep the downloaded archives in DATA_DIR/downloads")
    parser.add_argument("--retries", type=int, default=5)
    parser.add_argument("--domainnet_duplicates", metavar="FILE",
                        help="list of DomainNet files to remove, one path per line "
                             "relative to domain_net/ (default: the shipped list of 9,431)")
    parser.add_argument("--keep_domainnet_duplicates", action="store_true",
                        help="keep DomainNet's duplicate files")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        duplicates = (() if args.keep_domainnet_duplicates else
                      read_file_list(args.domainnet_duplicates, strip_prefix="domain_net/")
                      if args.domainnet_duplicates else None)
        outcome = download_datasets(args.data_dir, args.datasets,
                                    Fetcher(retries=args.retries, progress=not args.no_progress),
                                    args.keep_archives, duplicates)
    except (DomainBedError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    failed = [n for n, v in outcome.items() if v not in ("done", "skipped")]
    if failed:
        print(f"error: failed: {', '.join(failed)} (see above); run the command again to "
              f"resume", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
