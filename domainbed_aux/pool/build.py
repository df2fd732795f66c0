"""Building a pool from auxiliary runs, planning one without writing, adding external members.

:func:`plan_pool` returns the very pool :func:`build_pool` would return (same members, order,
member paths and file hashes) and writes nothing: a sweep can list the jobs that start from
a pool before the pool exists.
"""

import hashlib
import json
import logging
import os
import re
from typing import Any, Callable, List, Mapping, Optional, Sequence, Union

import torch

from domainbed.lib.misc import atomic_write_bytes, atomic_write_text
from domainbed.lib.weights import extract_state_dict, load_file, weights_bytes
from domainbed_aux.pool import runs
from domainbed_aux.pool.load import check_pool, load_pool, manifest_of, pool_from_manifest
from domainbed_aux.pool.members import (MANIFEST, MEMBERS_DIR, AuxPool, PoolError, PoolMember,
                                        arch_fingerprint, content_hash, count_params,
                                        featurizer_state_dict, sha256_bytes)

log = logging.getLogger(__name__)

# what becomes of a member file's bytes: written (build) or dropped (plan)
Sink = Callable[[str, bytes], None]


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_bytes(path, data)


def _drop(path: str, data: bytes) -> None:
    pass


def _store(pool_root: str, member: PoolMember, featurizer: Mapping[str, torch.Tensor],
           stem: str, sink: Sink = _write) -> PoolMember:
    """Give ``member`` its featurizer-only file (file, path, hash, arch, size); the file's
    bytes go to ``sink``."""
    # a plain name, or the user's image folders ``folder:NAME`` (datasets.registry.FOLDER_PREFIX)
    if member.dataset is not None and not re.fullmatch(
            r"(folder:)?[A-Za-z0-9][A-Za-z0-9_.+-]*", member.dataset):
        raise PoolError(f"dataset name {member.dataset!r} is not a plain name (letters, "
                        "digits, '_', '.', '+', '-'); use the dataset's registered name")
    rel = os.path.join(MEMBERS_DIR, member.dataset or "pretrained", stem + ".safetensors")
    path = os.path.join(pool_root, rel)
    data = weights_bytes(dict(featurizer), metadata={"pool_member": member.to_json()})
    sink(path, data)
    member.file, member.path = rel, path
    member.sha256 = sha256_bytes(data)
    member.arch, member.n_params = arch_fingerprint(featurizer), count_params(featurizer)
    return member


def _pretrained_member(pool_root: str, name: str, file: Optional[str],
                       sink: Sink) -> PoolMember:
    member = PoolMember(kind="pretrained", name=name)
    if file is None:
        return member
    content, _ = load_file(file, device="cpu")
    featurizer = featurizer_state_dict(extract_state_dict(content), strict=False, source=file)
    return _store(pool_root, member, featurizer, "pretrained", sink)


def _aux_members(aux_dirs: List[str], root: str, exclude_dataset: Optional[str],
                 require_no_test_env: bool, sink: Sink) -> List[PoolMember]:
    counts = {runs.OK: 0, runs.INCOMPLETE: 0, runs.DIVERGED: 0, runs.TEST_ENV: 0,
              runs.TARGET: 0}
    members = []
    for run in runs.find_run_dirs(aux_dirs, skip=[root]):
        status, found = runs.read_run_member(run, root, exclude_dataset, require_no_test_env)
        counts[status] += 1
        if found is None:
            level = logging.WARNING if status == runs.DIVERGED else logging.INFO
            log.log(level, "aux pool: skipping %s (%s)", run, status)
            continue
        member, featurizer = found
        stem = "h{}_t{}_{}".format(member.hparams_seed, member.trial_seed,
                                   hashlib.sha1(member.run_dir.encode()).hexdigest()[:10])
        members.append(_store(root, member, featurizer, stem, sink))
        del featurizer
    if not members:
        where = ", ".join(map(str, aux_dirs))
        if counts[runs.TARGET]:
            raise PoolError(f"{where} holds only runs of the target dataset "
                            f"{exclude_dataset!r} ({counts[runs.TARGET]} runs), which must "
                            "never be in its own pool; add auxiliary sweeps of other datasets")
        raise PoolError(f"no finished auxiliary run under {where} ({counts[runs.INCOMPLETE]} "
                        f"unfinished, {counts[runs.TEST_ENV]} with a test env); train "
                        "auxiliary runs with --test_envs -1 first")
    log.info("aux pool: %d members (skipped: %s)", len(members), counts)
    return members


def _as_list(aux_dirs: Union[str, Sequence[str]]) -> List[str]:
    return [aux_dirs] if isinstance(aux_dirs, (str, os.PathLike)) else list(aux_dirs)


def write_manifest(pool: AuxPool) -> str:
    """Write ``pool.json`` (members in the fixed order) atomically; returns its path."""
    path = os.path.join(pool.root, MANIFEST)
    atomic_write_text(path, json.dumps(manifest_of(pool), indent=1, sort_keys=True) + "\n")
    return path


def build_pool(aux_dirs: Union[str, Sequence[str]], output_dir: str,
               exclude_dataset: Optional[str] = None, pretrained_name: str = "pretrained",
               pretrained_file: Optional[str] = None, require_no_test_env: bool = True,
               overwrite: bool = False) -> AuxPool:
    """Scan auxiliary run dirs and write a pool (manifest + featurizer files) in ``output_dir``.

    Only finished runs (with ``done``) count; runs with a real test env are skipped when
    ``require_no_test_env``; runs whose recorded dataset is ``exclude_dataset`` (the target)
    are left out. Accepts the paper code's ``AUX/<Dataset>_notest/<run>/`` layout: the
    dataset comes from each run's recorded args. Returns the verified pool.
    """
    aux_dirs = _as_list(aux_dirs)
    root = os.path.abspath(output_dir)
    if os.path.exists(os.path.join(root, MANIFEST)) and not overwrite:
        raise PoolError(f"{os.path.join(root, MANIFEST)} already exists; load it with "
                        "load_pool, or pass overwrite=True to rebuild it")
    os.makedirs(root, exist_ok=True)
    members = _aux_members(aux_dirs, root, exclude_dataset, require_no_test_env, _write)
    pool = AuxPool(root, [_pretrained_member(root, pretrained_name, pretrained_file, _write)]
                   + members, exclude_dataset)
    return load_pool(write_manifest(pool), target_dataset=exclude_dataset)


def plan_pool(aux_dirs: Union[str, Sequence[str]], output_dir: str,
              exclude_dataset: Optional[str] = None, pretrained_name: str = "pretrained",
              pretrained_file: Optional[str] = None,
              require_no_test_env: bool = True) -> AuxPool:
    """The pool ``build_pool`` would write in ``output_dir`` (an existing manifest there is
    ignored, as by ``overwrite=True``), equal to what it returns, without writing anything.

    Reads every auxiliary model and serialises its featurizer in memory to know the member
    files' hashes; raises the errors ``build_pool`` raises, but does not check the files.
    """
    aux_dirs = _as_list(aux_dirs)
    root = os.path.abspath(output_dir)
    members = _aux_members(aux_dirs, root, exclude_dataset, require_no_test_env, _drop)
    pool = AuxPool(root, [_pretrained_member(root, pretrained_name, pretrained_file, _drop)]
                   + members, exclude_dataset)
    manifest = json.loads(json.dumps(manifest_of(pool)))  # the types a manifest file keeps
    planned = pool_from_manifest(manifest, root)
    check_pool(planned, os.path.join(root, MANIFEST), exclude_dataset, verify=False,
               on_disk=False)
    return planned


def add_external_member(pool_dir: str, weight_file: str, metadata: Mapping[str, Any]) -> AuxPool:
    """Add a featurizer obtained elsewhere ("shared by the community") to a pool.

    ``metadata`` needs ``dataset``; ``hparams``, ``hparams_seed``, ``trial_seed`` and
    ``name`` are optional. The file may hold a full model or a featurizer only. Members are
    re-sorted into the fixed order, so later members' indices may shift.
    """
    pool = load_pool(pool_dir)
    dataset = metadata.get("dataset")
    if not isinstance(dataset, str) or not dataset:
        raise PoolError("add_external_member needs metadata['dataset'], the auxiliary "
                        "dataset the featurizer was fine-tuned on")
    if dataset == pool.excluded_dataset:
        raise PoolError(f"{weight_file}: dataset {dataset!r} is the target this pool excludes")
    content, _ = load_file(weight_file, device="cpu")
    featurizer = featurizer_state_dict(extract_state_dict(content), strict=False,
                                       source=weight_file)
    del content
    arch = arch_fingerprint(featurizer)
    if arch != pool.aux_members[0].arch:
        raise PoolError(f"{weight_file}: its featurizer has other keys or shapes than the "
                        f"pool's (arch {arch} vs {pool.aux_members[0].arch}); only featurizers "
                        "of the same architecture can be pooled")
    member = PoolMember(kind="external", dataset=dataset,
                        hparams=dict(metadata.get("hparams") or {}),
                        hparams_seed=metadata.get("hparams_seed"),
                        trial_seed=metadata.get("trial_seed"),
                        name=metadata.get("name") or os.path.basename(weight_file))
    stem = "external_" + content_hash(featurizer)[:16]
    if os.path.exists(os.path.join(pool.root, MEMBERS_DIR, dataset, stem + ".safetensors")):
        raise PoolError(f"{weight_file}: the same featurizer is already in the pool")
    member = _store(pool.root, member, featurizer, stem)
    pool.members.append(member)
    return load_pool(write_manifest(pool), target_dataset=pool.excluded_dataset)
