"""The manifest of one weight file: ``<file>.sha256`` beside it, checked before it is loaded.

Files a run loads but that another step wrote (linear probes, composed init files, the
pretrained featurizer) get a manifest when written: JSON ``{"sha256", "file", "rebuild"}``,
where ``rebuild`` says how to make the file again. A run that loads such a file checks it
first; a file that does not match stops the run naming the file and the way to rebuild it
(a flipped byte would otherwise train silently from other weights). A file without a manifest
(the user's own) is loaded as it is. Torch-free.
"""

import hashlib
import json
import os
from typing import Optional

from domainbed.errors import WeightFileError
from domainbed.lib.atomic import atomic_write_text

SUFFIX = ".sha256"


def sha256_file(path: str, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path(path: str) -> str:
    return path + SUFFIX


def write_manifest(path: str, rebuild: str, sha256: Optional[str] = None) -> str:
    """Write ``<path>.sha256`` for the file at ``path`` (hashed now unless ``sha256`` is
    given); ``rebuild`` tells a user how to make the file again. Returns the digest."""
    digest = sha256 or sha256_file(path)
    atomic_write_text(manifest_path(path), json.dumps(
        {"sha256": digest, "file": os.path.basename(path), "rebuild": rebuild},
        indent=1, sort_keys=True) + "\n")
    return digest


def read_manifest(path: str) -> Optional[dict]:
    """The manifest of the file at ``path``, or None when it has none; an unreadable
    manifest is a WeightFileError."""
    try:
        with open(manifest_path(path), encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise WeightFileError(f"{manifest_path(path)}: unreadable manifest ({exc}); delete it "
                              f"and {path} and run the same command again to rebuild "
                              "them") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sha256"), str):
        raise WeightFileError(f"{manifest_path(path)}: not a weight-file manifest; delete it "
                              f"and {path} and run the same command again to rebuild them")
    return manifest


def verify_file(path: str) -> Optional[str]:
    """Check the file at ``path`` against its manifest; returns its sha256 (None without a
    manifest). Raises WeightFileError naming the file and how to rebuild it on a mismatch."""
    manifest = read_manifest(path)
    if manifest is None:
        return None
    digest = sha256_file(path)
    if digest != manifest["sha256"]:
        rebuild = manifest.get("rebuild") or "rebuild it"
        raise WeightFileError(f"{path}: its sha256 differs from {os.path.basename(path)}"
                              f"{SUFFIX} (modified or corrupt since it was written); {rebuild}")
    return digest
