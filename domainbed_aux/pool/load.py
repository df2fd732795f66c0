"""Reading a pool's manifest and the checks every pool passes before it is used."""

import json
import os
from typing import Any, Dict, Optional

from domainbed.lib.digests import sha256_file
from domainbed_aux.pool.members import (FORMAT_VERSION, MANIFEST, AuxPool, PoolError,
                                        PoolMember, sort_key)


def manifest_of(pool: AuxPool) -> Dict[str, Any]:
    """The manifest of ``pool``; sorts its auxiliary members into the fixed order first."""
    pool.members[1:] = sorted(pool.members[1:], key=sort_key)
    return {"format_version": FORMAT_VERSION, "excluded_dataset": pool.excluded_dataset,
            "members": [m.to_json() for m in pool.members]}


def pool_from_manifest(data: Dict[str, Any], root: str) -> AuxPool:
    """The pool a parsed manifest describes; member paths are under ``root``."""
    known = set(PoolMember.__dataclass_fields__) - {"path"}
    members = []
    for entry in data["members"]:
        member = PoolMember(**{k: v for k, v in entry.items() if k in known})
        if member.file is not None:
            member.path = os.path.join(root, member.file)
        members.append(member)
    return AuxPool(root, members, data.get("excluded_dataset"))


def load_pool(manifest: str, target_dataset: Optional[str] = None, verify: bool = True) -> AuxPool:
    """Read and check a pool (``manifest`` = the pool folder or its ``pool.json``).

    Refuses: an unknown format, a pool without auxiliary members, members out of the fixed
    order, members of ``target_dataset`` (by recorded dataset), members of different
    architectures, and (with ``verify``) any file whose sha256 differs from the manifest.
    """
    path = os.path.join(manifest, MANIFEST) if os.path.isdir(manifest) else manifest
    if not os.path.isfile(path):
        raise PoolError(f"no pool manifest at {path}; build the pool first (build_pool)")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        version, _ = data.get("format_version"), data["members"]
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise PoolError(f"{path}: not a pool manifest ({exc}); rebuild it") from None
    if version != FORMAT_VERSION:
        raise PoolError(f"{path}: pool format version {version!r} is not supported "
                        f"(this code reads version {FORMAT_VERSION}); rebuild the pool")
    pool = pool_from_manifest(data, os.path.dirname(os.path.abspath(path)))
    check_pool(pool, path, target_dataset, verify)
    return pool


def check_pool(pool: AuxPool, path: str, target_dataset: Optional[str], verify: bool,
               on_disk: bool = True) -> None:
    """Raise PoolError unless ``pool`` is usable (see :func:`load_pool`); ``on_disk=False``
    (a planned pool) skips the checks of the member files."""
    if not pool.members or pool.members[0].kind != "pretrained":
        raise PoolError(f"{path}: member 0 must be the pretrained featurizer; rebuild the pool")
    if not pool.aux_members:
        raise PoolError(f"{path}: the pool is empty (no auxiliary featurizer); add auxiliary "
                        "runs (build_pool) or external members (add_external_member)")
    if pool.aux_members != sorted(pool.aux_members, key=sort_key):
        raise PoolError(f"{path}: members are not in the fixed order (dataset, hparams_seed, "
                        "trial_seed); the manifest was edited by hand: rebuild it")
    for index, member in enumerate(pool.members):
        if index > 0 and target_dataset is not None and member.dataset == target_dataset:
            raise PoolError(f"{path}: member {index} ({member.file}) was fine-tuned on the "
                            f"target dataset {target_dataset!r}; the target must never be in "
                            "its own pool: rebuild it with exclude_dataset set")
        if member.file is None:
            if index > 0:
                raise PoolError(f"{path}: member {index} has no weight file")
            continue
        if not on_disk:
            continue
        if not os.path.isfile(member.path):
            raise PoolError(f"{path}: member {index} file {member.file} is missing")
        if verify and sha256_file(member.path) != member.sha256:
            raise PoolError(f"{path}: member {index} file {member.file} does not match its "
                            "sha256 in the manifest (modified or corrupt); rebuild the pool "
                            "or restore the file")
    archs = {m.arch for m in pool.members if m.file is not None}
    if len(archs) > 1:
        raise PoolError(f"{path}: members have different architectures ({sorted(archs)}); "
                        "a pool holds featurizers of one architecture only")
