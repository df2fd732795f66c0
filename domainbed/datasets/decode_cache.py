"""Decode cache: every image of a dataset decoded once into one verified uint8 store.

An image whose shorter side exceeds ``cache_side(image_size)`` is stored resized (Lanczos,
aspect ratio kept) so that its shorter side is that size; other images are stored as
decoded. ``cache_side`` is the smallest shorter side for which every crop of the training
augmentation still covers at least ``image_size`` pixels per side, so the crop is always
shrunk (never enlarged) to the output, as it is from the original; see docs/datasets.md for
what changes and why it is acceptable.

A store is one file, ``decoded-s<side>-<key>.u8`` in ``<dataset dir>/.domainbed_cache/``
(or in ``$DOMAINBED_CACHE_DIR/<dataset>-<hash of its path>/``). Its name holds the key: a
hash of the format version, the side, and the sorted file list with sizes and mtimes, so a
changed, added or removed file gives another store (the stale one is deleted when the new
one is built). Layout, little-endian::

    preamble (64 bytes): magic, format version, header offset and length, header crc32
    pixels: image 0, image 1, ... as (H, W, 3) uint8, back to back
    index: int64 (n, 4) array of (offset, height, width, crc32 of the image's pixels)
    header: JSON (format, key, side, count, index offset, index crc32)

The preamble, header and index are checked on open (a store that fails is rebuilt); the
crc32 of an image is checked on its first read (a mismatch raises ``DataError`` naming the
fix): once per process, or once in all for loader workers forked from the process that
opened the store (they share its record of verified images). A builder holds an exclusive
``flock`` on ``<store>.lock``, writes ``<store>.tmp-<pid>`` and renames it into place, so
readers see a complete store or none, and concurrent builders build it once.
"""

import hashlib
import json
import logging
import math
import mmap
import os
import struct
import time
import zlib
from contextlib import contextmanager
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from domainbed.errors import DataError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAGIC = b"DBDECODE"
PREAMBLE = struct.Struct("<8sIIQQI")  # magic, version, reserved, header offset, length, crc
PREAMBLE_BYTES = 64
CACHE_DIR_ENV = "DOMAINBED_CACHE_DIR"
CACHE_FOLDER = ".domainbed_cache"  # hidden: the dataset scanners skip it


def cache_side(image_size: int, min_scale: float, min_ratio: float) -> int:
    """The shorter side images are stored at: the smallest side ``s`` for which every crop of
    ``RandomResizedCrop(image_size, scale=(min_scale, _), ratio=(min_ratio, 1 / min_ratio))``
    has both sides >= ``image_size``. A crop of area ``a * W * H`` and ratio ``r`` has
    shorter side >= ``sqrt(a * min(r, 1 / r) * W * H)`` >= ``sqrt(min_scale * min_ratio) * s``.
    """
    return int(math.ceil(image_size / math.sqrt(min_scale * min(min_ratio, 1 / min_ratio))))


def stored_size(width: int, height: int, side: int) -> Tuple[int, int]:
    """``(width, height)`` of an image in the store: unchanged when its shorter side is at
    most ``side``, else scaled so that its shorter side is ``side`` (aspect ratio kept)."""
    short = min(width, height)
    if short <= side:
        return width, height
    if width <= height:
        return side, max(side, int(round(height * side / width)))
    return max(side, int(round(width * side / height))), side


def cache_key(paths: Sequence[str], root: str, side: int) -> str:
    """Hash of the format version, ``side`` and the sorted ``(path relative to root, size,
    mtime)`` of ``paths``: it changes when any file changes, appears or disappears."""
    entries = []
    for path in paths:
        st = os.stat(path)
        entries.append((os.path.relpath(path, root).replace(os.sep, "/"), st.st_size,
                        st.st_mtime_ns))
    entries.sort()
    payload = json.dumps([FORMAT_VERSION, side, entries], separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def default_cache_dir(dataset_dir: str) -> str:
    """``<dataset_dir>/.domainbed_cache``, or a folder per dataset under
    ``$DOMAINBED_CACHE_DIR`` when set (for read-only data folders)."""
    base = os.environ.get(CACHE_DIR_ENV)
    dataset_dir = os.path.abspath(dataset_dir)
    if not base:
        return os.path.join(dataset_dir, CACHE_FOLDER)
    digest = hashlib.sha256(dataset_dir.encode("utf-8")).hexdigest()[:12]
    return os.path.join(base, f"{os.path.basename(dataset_dir) or 'data'}-{digest}")


class DecodedStore:
    """Read access to one verified store: ``store[i]`` is image ``i`` as uint8 (H, W, 3).

    Picklable (a DataLoader worker started by spawn reopens the file); the file is checked
    again to be the one verified, and each image's crc32 before its first use (forked
    processes share the record of verified images: a shared anonymous mapping).
    """

    def __init__(self, path: str, key: str, side: int, paths: Sequence[str]):
        self.path, self.key, self.side = path, key, side
        self.paths, self.count = list(paths), len(paths)
        self._mm: Optional[mmap.mmap] = None
        self._verified: Optional[np.ndarray] = None
        self.index = self._open()
        st = os.stat(path)
        self._identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def _open(self) -> np.ndarray:
        """Map the file and check preamble, header and index; ValueError says what is wrong."""
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < PREAMBLE_BYTES:
                raise ValueError(f"{size} bytes, shorter than the preamble")
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            magic, version, _, header_at, header_len, header_crc = PREAMBLE.unpack_from(mm, 0)
            if magic != MAGIC or version != FORMAT_VERSION:
                raise ValueError(f"magic/version {magic!r}/{version}, expected "
                                 f"{MAGIC!r}/{FORMAT_VERSION}")
            if header_at + header_len != size:
                raise ValueError(f"{size} bytes, the header says {header_at + header_len}")
            header_bytes = mm[header_at:header_at + header_len]
            if zlib.crc32(header_bytes) != header_crc:
                raise ValueError("header checksum mismatch")
            header = json.loads(header_bytes.decode("utf-8"))
            expected = {"format": FORMAT_VERSION, "key": self.key, "side": self.side,
                        "count": self.count}
            for name, value in expected.items():
                if header.get(name) != value:
                    raise ValueError(f"header {name} {header.get(name)!r}, expected {value!r}")
            index_at = header["index_offset"]
            index_bytes = mm[index_at:index_at + self.count * 32]
            if len(index_bytes) != self.count * 32 or zlib.crc32(index_bytes) != header[
                    "index_crc"] or index_at + self.count * 32 != header_at:
                raise ValueError("index checksum or extent mismatch")
            index = np.frombuffer(index_bytes, dtype="<i8").reshape(self.count, 4).copy()
            ends = index[:, 0] + index[:, 1] * index[:, 2] * 3
            if self.count and (index[:, 0].min() < PREAMBLE_BYTES or ends.max() > index_at):
                raise ValueError("an image lies outside the pixel section")
        except Exception:
            mm.close()
            raise
        self._mm = mm
        # shared with forked workers: an image verified by one is verified for all
        self._verified = np.frombuffer(mmap.mmap(-1, max(self.count, 1)), dtype=np.bool_)
        return index

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_mm"], state["_verified"] = None, None
        return state

    def _mapped(self) -> mmap.mmap:
        if self._mm is None:  # unpickled in another process
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != self._identity:
                raise DataError(f"decode cache {self.path!r} was replaced while in use; "
                                f"run again")
            self._open()
        return self._mm

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> np.ndarray:
        return self.view(i).copy()

    def view(self, i: int) -> np.ndarray:
        """Image ``i`` as a read-only (H, W, 3) uint8 view of the store's memory map (no
        copy: a crop reads only its pixels), verified on first use."""
        mm = self._mapped()
        offset, height, width, crc = (int(v) for v in self.index[i])
        pixels = np.frombuffer(mm, dtype=np.uint8, count=height * width * 3, offset=offset)
        if not self._verified[i]:
            if zlib.crc32(pixels) != crc:
                raise DataError(f"decode cache {self.path!r} is corrupt (image {i}, "
                                f"{self.paths[i]!r}, fails its checksum); delete the file and "
                                f"run again to rebuild it")
            self._verified[i] = True
        return pixels.reshape(height, width, 3)

    def verify(self) -> None:
        """Check every image's crc32 (``DataError`` on the first mismatch)."""
        for i in range(self.count):
            self[i]


def _try_open(path: str, key: str, side: int, paths: Sequence[str]) -> Optional[DecodedStore]:
    if not os.path.exists(path):
        return None
    try:
        return DecodedStore(path, key, side, paths)
    except (ValueError, KeyError, TypeError, OSError, struct.error) as exc:
        log.warning("decode cache %s is invalid (%s); rebuilding it", path, exc)
        return None


@contextmanager
def _exclusive(lock_path: str):
    import fcntl
    with open(lock_path, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process building %s", lock_path[:-len(".lock")])
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def decode_for_store(decode: Callable, path: str, side: int) -> np.ndarray:
    """``decode(path)`` (a PIL RGB image) at its stored size, as (H, W, 3) uint8."""
    from PIL import Image
    image = decode(path)
    if image.mode != "RGB":
        image = image.convert("RGB")
    size = stored_size(image.width, image.height, side)
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


class _Decoder:  # picklable for the build pool
    def __init__(self, decode: Callable, side: int):
        self.decode, self.side = decode, side

    def __call__(self, path: str) -> np.ndarray:
        return decode_for_store(self.decode, path, self.side)


def _decoded(paths: Sequence[str], decoder: _Decoder, workers: int):
    """The decoded images of ``paths`` in order, from ``workers`` processes."""
    if workers <= 1 or len(paths) < 64:
        for path in paths:
            yield decoder(path)
        return
    import multiprocessing
    with multiprocessing.get_context().Pool(workers) as pool:
        yield from pool.imap(decoder, paths, chunksize=16)


def _build(paths: Sequence[str], path: str, key: str, side: int, decode: Callable,
           workers: int) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    start = last_log = time.time()  # progress every 5 s, and at the end
    index = np.zeros((len(paths), 4), dtype="<i8")
    log.info("decode cache: decoding %d images into %s (shorter side <= %d px)", len(paths),
             path, side)
    try:
        with open(tmp, "wb") as f:
            f.write(b"\0" * PREAMBLE_BYTES)
            offset = PREAMBLE_BYTES
            for i, pixels in enumerate(_decoded(paths, _Decoder(decode, side), workers)):
                data = np.ascontiguousarray(pixels).data
                f.write(data)
                index[i] = (offset, pixels.shape[0], pixels.shape[1], zlib.crc32(data))
                offset += pixels.nbytes
                now = time.time()
                if now - last_log > 5 or i + 1 == len(paths):
                    last_log = now
                    log.info("decode cache: %d/%d images (%.0f%%), %.1f GB, %.0f images/s",
                             i + 1, len(paths), 100 * (i + 1) / len(paths), offset / 1e9,
                             (i + 1) / max(now - start, 1e-9))
            index_bytes = index.tobytes()
            header = json.dumps({"format": FORMAT_VERSION, "key": key, "side": side,
                                 "count": len(paths), "index_offset": offset,
                                 "index_crc": zlib.crc32(index_bytes)}).encode("utf-8")
            f.write(index_bytes)
            f.write(header)
            header_at = offset + len(index_bytes)
            f.seek(0)
            f.write(PREAMBLE.pack(MAGIC, FORMAT_VERSION, 0, header_at, len(header),
                                  zlib.crc32(header)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    dir_fd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    log.info("decode cache: built %s (%.1f GB) in %.0f s", path, offset / 1e9,
             time.time() - start)


def _remove_stale(cache_dir: str, keep: str, side: int) -> None:
    """Delete the other stores of this side (built from files that have changed since);
    a process still reading one keeps its mapping (POSIX)."""
    prefix = f"decoded-s{side}-"
    for name in os.listdir(cache_dir):
        full = os.path.join(cache_dir, name)
        if name.startswith(prefix) and name.endswith(".u8") and full != keep:
            try:
                os.unlink(full)
                log.info("decode cache: removed stale %s", full)
            except FileNotFoundError:
                pass


def open_store(paths: Sequence[str], root: str, side: int, decode: Callable,
               cache_dir: Optional[str] = None, workers: int = 1) -> DecodedStore:
    """The verified store of ``paths`` (files under ``root``) at ``side``, built on first
    use with ``decode`` (path -> PIL image) in ``workers`` processes. The store holds the
    files in sorted order (``store.paths``), each decoded and, when larger than ``side``,
    resized (see ``stored_size``)."""
    cache_dir = cache_dir or default_cache_dir(root)
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the decode cache folder {cache_dir!r} ({exc}); set "
                        f"{CACHE_DIR_ENV} to a writable folder, or set the hparam "
                        f"decode_cache to false") from exc
    ordered = sorted(set(paths))
    key = cache_key(ordered, root, side)
    path = os.path.join(cache_dir, f"decoded-s{side}-{key[:24]}.u8")
    store = _try_open(path, key, side, ordered)
    if store is None:
        with _exclusive(path + ".lock"):
            # another process may have built it while this one waited for the lock
            store = _try_open(path, key, side, ordered)
            if store is None:
                _build(ordered, path, key, side, decode, workers)
                _remove_stale(cache_dir, path, side)
                store = DecodedStore(path, key, side, ordered)
    return store


class CachedLoader:
    """An image loader (path -> uint8 ``(3, H, W)`` tensor, channels-last view) reading a
    ``DecodedStore``; a path the store does not hold raises ``DataError``."""

    def __init__(self, store: DecodedStore):
        self.store = store
        self._position = {p: i for i, p in enumerate(store.paths)}

    def _index(self, path: str) -> int:
        i = self._position.get(path)
        if i is None:
            raise DataError(f"{path!r} is not in the decode cache {self.store.path!r} (the "
                            f"dataset changed after the cache was opened); run again")
        return i

    def __call__(self, path: str):
        import torch
        return torch.from_numpy(self.store[self._index(path)]).permute(2, 0, 1)

    def view(self, path: str) -> np.ndarray:
        """The image at ``path`` as a read-only (H, W, 3) view of the store (no copy), for
        transforms that take arrays (``takes_arrays``) and read only a crop of it."""
        return self.store.view(self._index(path))
