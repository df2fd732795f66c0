"""The ``init`` record, and the one function that writes an init file.

An init file holds ``featurizer.*`` and ``classifier.*`` (see :mod:`domainbed_aux.parts`)
and, in its metadata, the ``init`` record: what the file says about the initialisation it
holds. The core copies that record into every result record of a run started from the file
(``init``). Both kinds of init file (the shared linear probe, composed files) are written by
:func:`save_init_file`, so every file states the same fields::

    {"member": {"index", "kind", "dataset", "run", "sha256", ...},
     "members": [...] | None (fusing: every fused member), "lambdas": [...] | None,
     "u": [...] | None, "fusing_range": r | None, "robust": bool,
     "linear_probe_key": <probe key>, "linear_probe": <probe file sha256> | None}

``member.kind`` is ``"pretrained"`` (phi_pt, member 0), ``"aux"`` (a pool member) or
``"fused"``; ``linear_probe`` is None in the probe file itself (a file cannot hold its own
hash; the run records the file's path).
"""

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from domainbed_aux.parts import join_parts

PRETRAINED, AUX, FUSED = "pretrained", "aux", "fused"
METADATA_KEY = "init"


def pretrained_member(sha256: Optional[str]) -> Dict[str, Any]:
    """Member 0: the pretrained featurizer phi_pt."""
    return {"index": 0, "kind": PRETRAINED, "dataset": None, "run": None, "sha256": sha256}


def fused_member() -> Dict[str, Any]:
    return {"index": None, "kind": FUSED, "dataset": None, "run": None, "sha256": None}


@dataclass(frozen=True)
class InitRecord:
    """The ``init`` metadata of an init file (see the module docstring)."""

    member: Dict[str, Any]
    linear_probe_key: str
    linear_probe: Optional[str] = None  # the probe file's sha256; None in the probe itself
    members: Optional[List[Dict[str, Any]]] = None
    lambdas: Optional[List[float]] = None
    u: Optional[List[float]] = None
    fusing_range: Optional[float] = None
    robust: bool = False

    def to_json(self) -> Dict[str, Any]:
        return {"member": dict(self.member), "members": self.members,
                "lambdas": self.lambdas, "u": self.u, "fusing_range": self.fusing_range,
                "robust": bool(self.robust), "linear_probe_key": self.linear_probe_key,
                "linear_probe": self.linear_probe}


def init_record(member: Dict[str, Any], linear_probe_key: str,
                linear_probe_sha256: Optional[str] = None,
                members: Optional[List[Dict[str, Any]]] = None,
                lambdas: Optional[List[float]] = None, u: Optional[List[float]] = None,
                fusing_range: Optional[float] = None, robust: bool = False) -> Dict[str, Any]:
    """The ``init`` metadata of an init file, as a dict (see the module docstring)."""
    return InitRecord(member, linear_probe_key, linear_probe_sha256, members, lambdas, u,
                      fusing_range, robust).to_json()


def save_init_file(path: str, featurizer: Mapping[str, Any], classifier: Mapping[str, Any],
                   record: InitRecord, **metadata: Any) -> str:
    """Write the init file ``path``: ``featurizer.*`` + ``classifier.*`` (prefix-free parts
    given), ``record`` under ``init`` and any further ``metadata`` entries; returns path."""
    from domainbed.lib.digests import write_manifest
    from domainbed.lib.weights import save_weights
    if METADATA_KEY in metadata:
        raise ValueError(f"save_init_file: pass the init record as record, not as "
                         f"metadata[{METADATA_KEY!r}]")
    metadata[METADATA_KEY] = record.to_json()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_weights(path, join_parts(featurizer, classifier), metadata=metadata)
    write_manifest(path, rebuild_hint(path))  # runs check the file against it before loading
    return path


def rebuild_hint(path: str) -> str:
    """How to make a file of the linear-probe folder again (stated in its manifest)."""
    return (f"delete {path} and {os.path.basename(path)}.sha256 and launch the sweep or "
            "recipe again: the file is written again from the runs it comes from")
