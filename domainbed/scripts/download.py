"""Download the benchmark datasets and lay them out as the dataset classes read them.

    python -m domainbed.scripts.download --data_dir DIR [--datasets NAME [NAME ...]]

Each dataset is fetched into ``DIR/downloads/`` (resumable ``.part`` files, retries with
backoff), checked, extracted into a staging folder, reorganised, and moved into place with a
completion marker; a dataset whose folder already exists is skipped, so the command can be
re-run after any interruption.
"""

import argparse
import html
import http.client
import json
import logging
import os
import re
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from domainbed.errors import DataError, DomainBedError
from domainbed.lib.misc import atomic_write_text
from domainbed.registry import Registry

log = logging.getLogger("domainbed.download")

# ---------------------------------------------------------------------------------------
# Sources (facts). No checksum is published for these files, so none is checked; a Source
# takes a sha256 where one becomes known.

GDRIVE_URL = "https://drive.google.com/uc?export=download&id={id}"
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

# Files that upstream DomainBed removes from DomainNet as duplicates, as paths relative to
# domain_net/. This list MUST be filled from upstream's published duplicate list; the names
# are not known here and are not invented. Until then, pass --domainnet_duplicates FILE.
DOMAINNET_DUPLICATES: Tuple[str, ...] = ()

MARKER = ".domainbed_download.json"
USER_AGENT = "domainbed-download/1.0"
RETRY_HTTP_CODES = (408, 425, 429, 500, 502, 503, 504)


@dataclass(frozen=True)
class Source:
    """One file to fetch: from ``urls`` (mirrors, tried in order) or a Google Drive id."""

    filename: str
    urls: Tuple[str, ...] = ()
    gdrive_id: Optional[str] = None
    sha256: Optional[str] = None
    size: Optional[int] = None


def gdrive(filename: str, file_id: str) -> Source:
    return Source(filename, gdrive_id=file_id)


def lila(filename: str, path: str) -> Source:
    return Source(filename, urls=tuple(m + path for m in LILA_MIRRORS))


# ---------------------------------------------------------------------------------------
# HTTP: resumable, retried downloads and Google Drive's confirmation page


class _Retry(Exception):
    """A transient failure: try again (resuming) after a pause."""


_TRANSIENT = (_Retry, urllib.error.URLError, http.client.HTTPException, ConnectionError,
              TimeoutError)


class Fetcher:
    """Downloads files with resume (HTTP Range into ``<dest>.part``), retries with
    exponential backoff, size/sha256 checks and a tqdm progress bar."""

    def __init__(self, retries: int = 5, backoff: float = 2.0, timeout: float = 60.0,
                 chunk_size: int = 1 << 20, progress: bool = True,
                 sleep: Callable[[float], None] = time.sleep,
                 opener: Optional[urllib.request.OpenerDirector] = None):
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.progress = progress
        self.sleep = sleep
        self.cookies = CookieJar()
        self.opener = opener or urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies))

    def fetch_source(self, source: Source, directory: str) -> str:
        """Path of ``source`` downloaded into ``directory``; a finished file is reused."""
        dest = os.path.join(directory, source.filename)
        if os.path.isfile(dest):
            log.info("using %s (already downloaded)", dest)
            return dest
        if source.gdrive_id is not None:
            return self.fetch_google_drive(source.gdrive_id, dest, sha256=source.sha256,
                                           size=source.size)
        return self.fetch(source.urls, dest, sha256=source.sha256, size=source.size)

    def fetch(self, urls, dest: str, sha256: Optional[str] = None,
              size: Optional[int] = None) -> str:
        """Download the first of ``urls`` (a URL or mirrors) that works to ``dest``."""
        urls = (urls,) if isinstance(urls, str) else tuple(urls)
        if os.path.isfile(dest):
            return dest
        os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
        part = dest + ".part"
        errors = []
        for url in urls:
            try:
                self._with_retries(lambda: self._download_once(url, part), url)
            except DataError as exc:
                errors.append(str(exc))
                continue
            _verify_file(part, sha256, size)
            os.replace(part, dest)
            return dest
        raise DataError(" | ".join(errors) + (f" (partial file kept: {part})"
                                              if os.path.exists(part) else ""))

    def fetch_google_drive(self, file_id: str, dest: str, sha256: Optional[str] = None,
                           size: Optional[int] = None) -> str:
        """Download a Google Drive file, passing the large-file confirmation page."""
        if os.path.isfile(dest):
            return dest
        hint = (f"or download {GDRIVE_URL.format(id=file_id)} in a browser, save it as "
                f"{dest} and run the command again")
        url = self._with_retries(lambda: self._resolve_google_drive(file_id, hint),
                                 f"Google Drive file {file_id}")
        try:
            return self.fetch(url, dest, sha256=sha256, size=size)
        except DataError as exc:
            raise DataError(f"{exc}; {hint}") from exc

    def _with_retries(self, attempt: Callable, what: str):
        for i in range(self.retries + 1):
            try:
                return attempt()
            except _TRANSIENT as exc:
                reason = getattr(exc, "reason", None) or exc
                if i == self.retries:
                    raise DataError(f"could not download {what} after {self.retries + 1} "
                                    f"attempts ({reason}); run the command again to resume")
                delay = min(self.backoff * 2 ** i, 300.0)
                log.warning("download of %s failed (%s); retrying in %.0f s", what, reason, delay)
                self.sleep(delay)

    def _open(self, url: str, headers: Optional[Dict[str, str]] = None):
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
        try:
            return self.opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in RETRY_HTTP_CODES:
                raise _Retry(f"HTTP {exc.code} from {url}") from exc
            raise DataError(f"HTTP {exc.code} ({exc.reason}) from {url}") from exc

    def _download_once(self, url: str, part: str) -> None:
        offset = os.path.getsize(part) if os.path.exists(part) else 0
        try:
            response = self._open(url, {"Range": f"bytes={offset}-"} if offset else None)
        except DataError as exc:
            cause = exc.__cause__
            if offset and isinstance(cause, urllib.error.HTTPError) and cause.code == 416:
                total = _content_range_total(cause.headers.get("Content-Range", ""))
                if total == offset:
                    return  # the partial file is already complete
                os.remove(part)
                raise _Retry(f"server refused to resume at byte {offset}") from exc
            raise
        with response:
            total = None
            if offset and response.status == 206:
                start, total = _content_range(response.headers.get("Content-Range", ""))
                if start != offset:
                    raise _Retry(f"server resumed at byte {start}, not {offset}")
                mode = "ab"
            else:
                offset, mode = 0, "wb"  # no range support: start again
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
            name = os.path.basename(part)[:-len(".part")]
            with open(part, mode) as f, _progress(total, offset, name, self.progress) as bar:
                while True:
                    chunk = response.read(self.chunk_size)
                    if not chunk:
                        break
                    f.write(chunk)
                    bar.update(len(chunk))
        received = os.path.getsize(part)
        if total is not None and received != total:
            raise _Retry(f"connection closed after {received} of {total} bytes")

    def _resolve_google_drive(self, file_id: str, hint: str) -> str:
        url = GDRIVE_URL.format(id=file_id)
        for _ in range(3):
            response = self._open(url)
            with response:
                if "text/html" not in response.headers.get("Content-Type", ""):
                    return response.geturl()
                page = response.read(4_000_000).decode("utf-8", "replace")
                base = response.geturl()
            next_url = google_drive_confirm_url(page, base, self.cookies)
            if next_url is None:
                if re.search(r"quota|too many users", page, re.I):
                    raise DataError(f"Google Drive refuses file {file_id} for now (download "
                                    f"quota exceeded); try again later, {hint}")
                raise DataError(f"Google Drive returned an unexpected page for file "
                                f"{file_id}; {hint}")
            url = next_url
        raise DataError(f"Google Drive keeps asking to confirm file {file_id}; {hint}")


class _FormParser(HTMLParser):
    """Collects each form's action and hidden inputs."""

    def __init__(self):
        super().__init__()
        self.forms: List[Tuple[Dict[str, str], Dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((attrs, {}))
        elif tag == "input" and self.forms and attrs.get("type", "").lower() == "hidden":
            if attrs.get("name"):
                self.forms[-1][1][attrs["name"]] = attrs.get("value", "")


def google_drive_confirm_url(page: str, base_url: str, cookies: Iterable = ()) -> Optional[str]:
    """The URL that confirms a Google Drive download from its warning ``page``, or None.

    Handles the download form (hidden inputs incl. ``confirm``), a ``confirm=`` link, and
    the older ``download_warning`` cookie.
    """
    parser = _FormParser()
    parser.feed(page)
    for attrs, inputs in parser.forms:
        if attrs.get("id") == "download-form" or "confirm" in inputs:
            action = urllib.parse.urljoin(base_url, html.unescape(attrs.get("action", "")))
            return action + ("&" if "?" in action else "?") + urllib.parse.urlencode(inputs)
    link = re.search(r'href="([^"]*[?&;]confirm=[^"]+)"', page)
    if link:
        return urllib.parse.urljoin(base_url, html.unescape(link.group(1)))
    for cookie in cookies:
        if cookie.name.startswith("download_warning"):
            return base_url + ("&" if "?" in base_url else "?") + "confirm=" + cookie.value
    return None


def _content_range(value: str) -> Tuple[int, Optional[int]]:
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", value.strip())
    if not match:
        raise _Retry(f"bad Content-Range {value!r}")
    total = match.group(2)
    return int(match.group(1)), (int(total) if total.isdigit() else None)


def _content_range_total(value: str) -> Optional[int]:
    match = re.search(r"/(\d+)\s*$", value)
    return int(match.group(1)) if match else None


def _progress(total, initial, name, enabled):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=name, unit="B", unit_scale=True,
                unit_divisor=1024, disable=not enabled, leave=False)


def _verify_file(path: str, sha256: Optional[str], size: Optional[int]) -> None:
    if size is not None and os.path.getsize(path) != size:
        got = os.path.getsize(path)
        os.remove(path)
        raise DataError(f"{path}: {got} bytes, expected {size}; deleted it, run the command "
                        f"again to download it again")
    if sha256 is not None:
        import hashlib
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != sha256.lower():
            os.remove(path)
            raise DataError(f"{path}: sha256 {digest.hexdigest()}, expected {sha256}; deleted "
                            f"it, run the command again to download it again")


# ---------------------------------------------------------------------------------------
# Archives and layout


def _inside(root: str, name: str) -> bool:
    root = os.path.realpath(root)
    return os.path.commonpath([root, os.path.realpath(os.path.join(root, name))]) == root


def extract_archive(path: str, dest: str) -> None:
    """Extract a zip or tar(.gz) into ``dest``; members escaping ``dest`` are refused.

    A corrupt archive is deleted and raises DataError (re-running downloads it again).
    """
    os.makedirs(dest, exist_ok=True)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                bad = [m for m in archive.namelist() if not _inside(dest, m)]
                if bad:
                    raise DataError(f"{path}: unsafe member path {bad[0]!r}; not extracted")
                archive.extractall(dest)
        elif tarfile.is_tarfile(path):
            with tarfile.open(path) as archive:
                if hasattr(tarfile, "data_filter"):
                    archive.extractall(dest, filter="data")
                else:
                    members = archive.getmembers()
                    bad = [m.name for m in members if not _inside(dest, m.name)
                           or m.issym() or m.islnk() or m.isdev()]
                    if bad:
                        raise DataError(f"{path}: unsafe member {bad[0]!r}; not extracted")
                    archive.extractall(dest, members=members)
        else:
            raise zipfile.BadZipFile("neither a zip nor a tar archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as exc:
        os.remove(path)
        raise DataError(f"archive {path} is corrupt ({exc}); deleted it, run the command "
                        f"again to download it again") from exc


def drop_listed_files(root: str, relpaths: Iterable[str]) -> int:
    """Delete the files ``relpaths`` (relative to ``root``); returns how many existed."""
    removed = 0
    for rel in relpaths:
        if not _inside(root, rel):
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
    environments = get_dataset_class(dataset).ENVIRONMENTS
    missing = [e for e in environments if not os.path.isdir(os.path.join(folder, e))]
    if missing:
        raise DataError(f"{dataset}: the downloaded data lack the domain folder(s) {missing} "
                        f"(found {sorted(os.listdir(folder))})")


# ---------------------------------------------------------------------------------------
# Datasets


class Job:
    """Where one dataset is downloaded, staged and installed inside ``data_dir``."""

    def __init__(self, data_dir: str, fetcher: Fetcher, keep_archives: bool = False,
                 duplicates: Sequence[str] = DOMAINNET_DUPLICATES):
        self.data_dir = data_dir
        self.fetcher = fetcher
        self.keep_archives = keep_archives
        self.duplicates = tuple(duplicates)
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
        log.warning("DomainNet: no duplicate list given, duplicate files are kept "
                    "(pass --domainnet_duplicates FILE)")
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


ALIASES = {"RotatedMNIST": "MNIST", "ColoredMNIST": "MNIST"}


def download_datasets(data_dir: str, datasets: Optional[Sequence[str]] = None,
                      fetcher: Optional[Fetcher] = None, keep_archives: bool = False,
                      duplicates: Sequence[str] = DOMAINNET_DUPLICATES) -> Dict[str, str]:
    """Download and install ``datasets`` (default: all) under ``data_dir``.

    Returns ``name -> "done" | "skipped" | error message``; one failure does not stop the
    others. A dataset whose folder exists is skipped (with its marker: finished here;
    without: someone else's copy, left untouched).
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
                             "relative to domain_net/")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        duplicates = (read_file_list(args.domainnet_duplicates, strip_prefix="domain_net/")
                      if args.domainnet_duplicates else DOMAINNET_DUPLICATES)
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
