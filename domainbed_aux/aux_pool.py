"""The auxiliary pool: featurizers fine-tuned on auxiliary datasets, ready to initialise runs.

A pool is a folder with a manifest ``pool.json`` and featurizer-only weight files under
``members/``. Member 0 is the pretrained featurizer (a name, plus a file and its hash when
one is given); members 1.. are the LAST-step featurizers of auxiliary runs (trained with
``--test_envs -1``), in a fixed order: by dataset name, then by ``(hparams_seed,
trial_seed)``, then by file name. Manifest format (version 1)::

    {"format_version": 1, "excluded_dataset": "PACS" | null,
     "members": [{"kind": "pretrained", "name", "file", "sha256", "arch", "n_params"},
                 {"kind": "aux" | "external", "dataset", "run_dir", "hparams",
                  "hparams_seed", "trial_seed", "file", "sha256", "arch", "n_params",
                  "name"}, ...]}

``file`` and ``run_dir`` are relative to the pool folder. ``arch`` fingerprints the
featurizer's key names and shapes (members must share it to be averaged or fused);
``n_params`` counts the scalars of its floating tensors. A dataset's identity is the
``dataset`` argument its runs recorded, never the name of the folder holding them.
"""

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from domainbed.errors import DomainBedError
from domainbed.lib import run_dir as rd
from domainbed.lib.misc import atomic_write_text
from domainbed.lib.weights import extract_state_dict, load_file, save_weights

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "pool.json"
MEMBERS_DIR = "members"
FEATURIZER_PREFIXES = ("featurizer.", "network.0.")  # ours / upstream's Sequential layout


class PoolError(DomainBedError):
    """An auxiliary pool that is missing, empty, tampered with or leaks the target dataset."""


@dataclass
class PoolMember:
    """One pool entry; ``path`` (absolute, derived from the pool folder) is not stored."""

    kind: str                          # "pretrained", "aux" or "external"
    dataset: Optional[str] = None
    file: Optional[str] = None
    sha256: Optional[str] = None
    arch: Optional[str] = None
    n_params: Optional[int] = None
    run_dir: Optional[str] = None
    hparams: Dict[str, Any] = field(default_factory=dict)
    hparams_seed: Optional[int] = None
    trial_seed: Optional[int] = None
    name: Optional[str] = None
    path: Optional[str] = field(default=None, compare=False)

    def to_json(self) -> Dict[str, Any]:
        entry = asdict(self)
        entry.pop("path")
        return entry


@dataclass
class AuxPool:
    """A loaded pool: ``members[0]`` is the pretrained featurizer, then the aux members."""

    root: str
    members: List[PoolMember]
    excluded_dataset: Optional[str] = None

    @property
    def pretrained(self) -> PoolMember:
        return self.members[0]

    @property
    def aux_members(self) -> List[PoolMember]:
        return self.members[1:]

    @property
    def datasets(self) -> List[str]:
        """Auxiliary datasets in the pool's fixed (sorted) order."""
        return sorted({m.dataset for m in self.aux_members})

    def runs_of(self, dataset: str) -> List[PoolMember]:
        runs = [m for m in self.aux_members if m.dataset == dataset]
        if not runs:
            raise PoolError(f"the pool has no member of dataset {dataset!r}; it has "
                            f"{', '.join(self.datasets)}")
        return runs

    def index_of(self, member: PoolMember) -> int:
        return next(i for i, m in enumerate(self.members) if m is member)


def sha256_file(path: str, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def arch_fingerprint(state: Mapping[str, torch.Tensor]) -> str:
    """A short hash of the key names, shapes and dtypes: equal for averageable featurizers."""
    text = json.dumps([[k, list(v.shape), str(v.dtype)] for k, v in sorted(state.items())])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def content_hash(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 of the key names and raw tensor bytes (independent of the file's metadata)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        value = state[key].detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{key}|{value.dtype}|{tuple(state[key].shape)}|".encode("utf-8"))
        digest.update(value.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def count_params(state: Mapping[str, torch.Tensor]) -> int:
    return int(sum(v.numel() for v in state.values() if v.is_floating_point()))


def featurizer_state_dict(state: Mapping[str, torch.Tensor], strict: bool = True,
                          source: str = "state dict") -> Dict[str, torch.Tensor]:
    """The featurizer part of a model state dict, prefix stripped.

    Takes the ``featurizer.`` keys (or, failing them, upstream's ``network.0.`` keys);
    with ``strict=False`` a dict with neither is taken as already featurizer-only.
    """
    for prefix in FEATURIZER_PREFIXES:
        part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if part:
            return part
    if strict:
        sample = ", ".join(sorted(state)[:4])
        raise PoolError(f"{source}: no featurizer weights (no key starts with "
                        f"{' or '.join(FEATURIZER_PREFIXES)}; keys: {sample}...); "
                        "is this a model saved by domainbed.scripts.train?")
    return dict(state)


def _sort_key(member: PoolMember) -> Tuple:
    big = float("inf")
    return (member.dataset or "",
            big if member.hparams_seed is None else member.hparams_seed,
            big if member.trial_seed is None else member.trial_seed,
            member.file or "")


# ----------------------------------------------------------------------- scanning runs

def find_run_dirs(aux_dirs: Iterable[str], skip: Sequence[str] = ()) -> List[str]:
    """Run directories (holding results.jsonl, a model or ``done``) under ``aux_dirs``."""
    markers = (rd.RESULTS, rd.MODEL, rd.DONE)
    skip = {os.path.realpath(s) for s in skip}
    found = []
    for top in aux_dirs:
        if not os.path.isdir(top):
            raise PoolError(f"auxiliary directory {top!r} does not exist; give the folder of "
                            "the auxiliary sweeps (e.g. AUX holding AUX/<Dataset>_notest/<run>)")
        for dirpath, dirnames, filenames in os.walk(top):
            if os.path.realpath(dirpath) in skip:
                dirnames[:] = []
                continue
            if any(m in filenames for m in markers):
                found.append(dirpath)
                dirnames[:] = []  # a run dir holds no other runs
            dirnames.sort()
    return sorted(set(found))


def read_run_record(run_dir: str) -> Dict[str, Any]:
    """The ``args`` and ``hparams`` a run recorded (first results.jsonl record holding them)."""
    path = os.path.join(run_dir, rd.RESULTS)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a torn last line of a killed run
                if isinstance(record, dict) and isinstance(record.get("args"), dict):
                    return {"args": record["args"], "hparams": record.get("hparams") or {}}
    return {}


def _run_member(run_dir: str, pool_root: str, exclude_dataset: Optional[str],
                require_no_test_env: bool) -> Tuple[str, Optional[Tuple[PoolMember, dict]]]:
    """``(status, (member, featurizer))``; status is "ok", "incomplete", "test_env" or "target"."""
    if not os.path.exists(os.path.join(run_dir, rd.DONE)):
        return "incomplete", None
    info = read_run_record(run_dir)
    model_path = os.path.join(run_dir, rd.MODEL)
    content = None
    if not info:  # fall back on the args saved with the model
        content, metadata = load_file(model_path, device="cpu")
        if isinstance(metadata.get("args"), dict):
            info = {"args": metadata["args"], "hparams": metadata.get("hparams") or {}}
    args = info.get("args") or {}
    dataset = args.get("dataset")
    if not dataset:
        raise PoolError(f"{run_dir}: the run recorded no 'dataset' argument (neither in "
                        f"{rd.RESULTS} nor in {rd.MODEL} metadata); cannot tell its dataset")
    test_envs = args.get("test_envs")
    if not isinstance(test_envs, list):
        test_envs = [] if test_envs is None else [test_envs]
    if require_no_test_env and any(int(t) >= 0 for t in test_envs):
        return "test_env", None
    if exclude_dataset is not None and dataset == exclude_dataset:
        return "target", None
    if content is None:
        content, _ = load_file(model_path, device="cpu")
    featurizer = featurizer_state_dict(extract_state_dict(content), source=model_path)
    del content
    member = PoolMember(kind="aux", dataset=dataset, hparams=info.get("hparams") or {},
                        hparams_seed=args.get("hparams_seed"), trial_seed=args.get("trial_seed"),
                        run_dir=os.path.relpath(run_dir, pool_root))
    return "ok", (member, featurizer)


def _store(pool_root: str, member: PoolMember, featurizer: Mapping[str, torch.Tensor],
           stem: str) -> PoolMember:
    """Write the featurizer-only file of ``member`` and fill in file, hash, arch, size."""
    if member.dataset is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*",
                                                       member.dataset):
        raise PoolError(f"dataset name {member.dataset!r} is not a plain name (letters, "
                        "digits, '_', '.', '+', '-'); use the dataset's registered name")
    rel = os.path.join(MEMBERS_DIR, member.dataset or "pretrained", stem + ".safetensors")
    path = os.path.join(pool_root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_weights(path, featurizer, metadata={"pool_member": member.to_json()})
    member.file, member.path = rel, path
    member.sha256 = sha256_file(path)
    member.arch, member.n_params = arch_fingerprint(featurizer), count_params(featurizer)
    return member


def _pretrained_member(pool_root: str, name: str, file: Optional[str]) -> PoolMember:
    member = PoolMember(kind="pretrained", name=name)
    if file is None:
        return member
    content, _ = load_file(file, device="cpu")
    featurizer = featurizer_state_dict(extract_state_dict(content), strict=False, source=file)
    return _store(pool_root, member, featurizer, "pretrained")


def write_manifest(pool: AuxPool) -> str:
    """Write ``pool.json`` (members in the fixed order) atomically; returns its path."""
    pool.members[1:] = sorted(pool.members[1:], key=_sort_key)
    manifest = {"format_version": FORMAT_VERSION, "excluded_dataset": pool.excluded_dataset,
                "members": [m.to_json() for m in pool.members]}
    path = os.path.join(pool.root, MANIFEST)
    atomic_write_text(path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
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
    aux_dirs = [aux_dirs] if isinstance(aux_dirs, (str, os.PathLike)) else list(aux_dirs)
    root = os.path.abspath(output_dir)
    if os.path.exists(os.path.join(root, MANIFEST)) and not overwrite:
        raise PoolError(f"{os.path.join(root, MANIFEST)} already exists; load it with "
                        "load_pool, or pass overwrite=True to rebuild it")
    os.makedirs(root, exist_ok=True)
    counts = {"ok": 0, "incomplete": 0, "test_env": 0, "target": 0}
    members = []
    for run in find_run_dirs(aux_dirs, skip=[root]):
        status, found = _run_member(run, root, exclude_dataset, require_no_test_env)
        counts[status] += 1
        if found is None:
            log.info("aux pool: skipping %s (%s)", run, status)
            continue
        member, featurizer = found
        stem = "h{}_t{}_{}".format(member.hparams_seed, member.trial_seed,
                                   hashlib.sha1(member.run_dir.encode()).hexdigest()[:10])
        members.append(_store(root, member, featurizer, stem))
        del featurizer
    if not members:
        where = ", ".join(map(str, aux_dirs))
        if counts["target"]:
            raise PoolError(f"{where} holds only runs of the target dataset "
                            f"{exclude_dataset!r} ({counts['target']} runs), which must never "
                            "be in its own pool; add auxiliary sweeps of other datasets")
        raise PoolError(f"no finished auxiliary run under {where} ({counts['incomplete']} "
                        f"unfinished, {counts['test_env']} with a test env); train auxiliary "
                        "runs with --test_envs -1 first")
    log.info("aux pool: %d members (skipped: %s)", len(members), counts)
    pool = AuxPool(root, [_pretrained_member(root, pretrained_name, pretrained_file)] + members,
                   exclude_dataset)
    return load_pool(write_manifest(pool), target_dataset=exclude_dataset)


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
        version = data.get("format_version")
        entries = data["members"]
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise PoolError(f"{path}: not a pool manifest ({exc}); rebuild it") from None
    if version != FORMAT_VERSION:
        raise PoolError(f"{path}: pool format version {version!r} is not supported "
                        f"(this code reads version {FORMAT_VERSION}); rebuild the pool")
    root = os.path.dirname(os.path.abspath(path))
    known = set(PoolMember.__dataclass_fields__) - {"path"}
    members = []
    for entry in entries:
        member = PoolMember(**{k: v for k, v in entry.items() if k in known})
        if member.file is not None:
            member.path = os.path.join(root, member.file)
        members.append(member)
    pool = AuxPool(root, members, data.get("excluded_dataset"))
    _check_pool(pool, path, target_dataset, verify)
    return pool


def _check_pool(pool: AuxPool, path: str, target_dataset: Optional[str], verify: bool) -> None:
    if not pool.members or pool.members[0].kind != "pretrained":
        raise PoolError(f"{path}: member 0 must be the pretrained featurizer; rebuild the pool")
    if not pool.aux_members:
        raise PoolError(f"{path}: the pool is empty (no auxiliary featurizer); add auxiliary "
                        "runs (build_pool) or external members (add_external_member)")
    if pool.aux_members != sorted(pool.aux_members, key=_sort_key):
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
