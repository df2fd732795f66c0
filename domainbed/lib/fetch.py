"""Resumable, retried HTTP downloads, including Google Drive's large-file confirmation.

``Fetcher`` downloads into ``<dest>.part`` with HTTP Range resumes, retries transient
failures with exponential backoff, checks size and sha256 when known, and shows a tqdm bar.
Used by ``domainbed.datasets.download``; it knows no dataset.
"""

import hashlib
import html
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from domainbed.errors import DataError

log = logging.getLogger("domainbed.download")

GDRIVE_URL = "https://drive.google.com/uc?export=download&id={id}"
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
            verify_file(part, sha256, size)
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


def verify_file(path: str, sha256: Optional[str], size: Optional[int]) -> None:
    if size is not None and os.path.getsize(path) != size:
        got = os.path.getsize(path)
        os.remove(path)
        raise DataError(f"{path}: {got} bytes, expected {size}; deleted it, run the command "
                        f"again to download it again")
    if sha256 is not None:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != sha256.lower():
            os.remove(path)
            raise DataError(f"{path}: sha256 {digest.hexdigest()}, expected {sha256}; deleted "
                            f"it, run the command again to download it again")
