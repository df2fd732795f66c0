"""The pool's data model: members, the pool, the fixed order, and the hashes of featurizers.

See :mod:`domainbed_aux.pool` for the manifest format.
"""

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from domainbed.errors import DomainBedError
from domainbed_aux.parts import FEATURIZER_PREFIXES, strip_prefix

FORMAT_VERSION = 1
MANIFEST = "pool.json"
MEMBERS_DIR = "members"


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


def sort_key(member: PoolMember) -> Tuple:
    """The fixed order of auxiliary members: dataset, hparams_seed, trial_seed, file."""
    big = float("inf")
    return (member.dataset or "",
            big if member.hparams_seed is None else member.hparams_seed,
            big if member.trial_seed is None else member.trial_seed,
            member.file or "")


def sha256_bytes(data: bytes) -> str:
    """The same digest as :func:`domainbed.lib.digests.sha256_file` of a file holding
    ``data``."""
    return hashlib.sha256(data).hexdigest()


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
        part = strip_prefix(state, prefix)
        if part:
            return part
    if strict:
        sample = ", ".join(sorted(state)[:4])
        raise PoolError(f"{source}: no featurizer weights (no key starts with "
                        f"{' or '.join(FEATURIZER_PREFIXES)}; keys: {sample}...); "
                        "is this a model saved by domainbed.scripts.train?")
    return dict(state)
