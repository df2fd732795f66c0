"""The on-disk cache of generated embedded datasets: one ``.npz`` per dataset and version.

Location: ``<root>/embedded/`` when a data root is given, else ``$DOMAINBED_EMBEDDED_CACHE``,
else ``~/.cache/domainbed/embedded``. Files are written atomically, so processes that
generate the same dataset at once each write a complete file and readers never see a part.

A process keeps the arrays of the files it read (the runs of an in-process sweep load the
same dataset over and over: decompressing it took 30 ms a run); a file replaced since (its
size or modification time changed) is read again. The arrays are read-only: datasets copy
what they keep.
"""

import io
import logging
import os
import zipfile
from typing import Dict, Optional, Tuple

import numpy as np

from domainbed.datasets.embedded import specs
from domainbed.lib.misc import atomic_write_bytes

logger = logging.getLogger(__name__)

CACHE_ENV_VAR = "DOMAINBED_EMBEDDED_CACHE"

# path -> ((size, mtime_ns) of the file read, its arrays)
_READ: Dict[str, Tuple[Tuple[int, int], Dict[str, np.ndarray]]] = {}


def cache_dir(root: Optional[str] = None) -> str:
    """The folder holding the cached embedded datasets for data root ``root``."""
    if root:
        return os.path.join(os.path.expanduser(root), "embedded")
    return os.environ.get(CACHE_ENV_VAR) or os.path.join(
        os.path.expanduser("~"), ".cache", "domainbed", "embedded")


def cache_path(name: str, root: Optional[str] = None) -> str:
    """Cache file of dataset ``name``; the generator version is part of the name."""
    specs.get_spec(name)
    return os.path.join(cache_dir(root), f"{name}_v{specs.GENERATOR_VERSION}.npz")


def _check(name: str, arrays: Dict[str, np.ndarray]) -> None:
    spec = specs.get_spec(name)
    n = spec.n_per_domain * len(spec.domains)
    problems = []
    if int(arrays["version"]) != specs.GENERATOR_VERSION:
        problems.append(f"version {int(arrays['version'])}")
    if tuple(arrays["classes"]) != spec.classes or tuple(arrays["domains"]) != spec.domains:
        problems.append("class or domain names")
    if arrays["x"].shape != (n, 3, 32, 32) or arrays["x"].dtype != np.uint8:
        problems.append(f"images {arrays['x'].shape} {arrays['x'].dtype}")
    if arrays["y"].shape != (n,) or arrays["env"].shape != (n,):
        problems.append("label or environment count")
    if problems:
        raise ValueError("; ".join(problems))


def _file_key(path: str) -> Tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def read_cache(name: str, path: str) -> Dict[str, np.ndarray]:
    """The arrays stored at ``path`` (read-only; kept for the next call while the file is
    unchanged); ValueError (or OSError) if they are not a valid cache."""
    file_key = _file_key(path)
    kept = _READ.get(path)
    if kept is not None and kept[0] == file_key:
        return dict(kept[1])
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in ("x", "y", "env", "classes", "domains", "version")}
    _check(name, arrays)
    for array in arrays.values():
        array.flags.writeable = False
    _READ[path] = (file_key, arrays)
    return dict(arrays)


def write_cache(name: str, path: str, arrays: Dict[str, np.ndarray]) -> None:
    spec = specs.get_spec(name)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=arrays["x"], y=arrays["y"], env=arrays["env"],
                        classes=np.array(spec.classes), domains=np.array(spec.domains),
                        version=np.array(specs.GENERATOR_VERSION))
    atomic_write_bytes(path, buffer.getvalue())


def load_or_generate(name: str, root: Optional[str] = None) -> Dict[str, np.ndarray]:
    """Arrays ``x`` (uint8 N x 3 x 32 x 32), ``y``, ``env`` of dataset ``name``.

    Read from the cache when a valid file is there; otherwise generate, then store (an
    unwritable cache folder only costs a warning: generation takes seconds).
    """
    path = cache_path(name, root)
    if os.path.exists(path):
        try:
            return read_cache(name, path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            logger.warning("ignoring invalid cache %s (%s); generating it again", path, exc)
    logger.info("generating embedded dataset %s into %s", name, path)
    arrays = specs.generate(name)
    try:
        write_cache(name, path, arrays)
    except OSError as exc:
        logger.warning("cannot write the cache %s (%s); using the generated data unsaved; "
                       "set --data_dir or %s to a writable folder", path, exc, CACHE_ENV_VAR)
    return arrays
