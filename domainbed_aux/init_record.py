"""The ``init`` record: what a weight file says about the initialisation it holds.

Written into the metadata of every init file (the shared linear probe and composed files);
the core copies it into every result record of a run started from the file (``init``).
One builder, so that every file states the same fields::

    {"member": {"index", "kind", "dataset", "run", "sha256", ...},
     "members": [...] | None (fusing: every fused member), "lambdas": [...] | None,
     "u": [...] | None, "fusing_range": r | None, "robust": bool,
     "linear_probe_key": <probe key>, "linear_probe": <probe file sha256> | None}

``member.kind`` is ``"pretrained"`` (phi_pt, member 0), ``"aux"`` (a pool member) or
``"fused"``; ``linear_probe`` is None in the probe file itself (a file cannot hold its own
hash; the run records the file's path).
"""

from typing import Any, Dict, List, Optional

PRETRAINED, AUX, FUSED = "pretrained", "aux", "fused"


def pretrained_member(sha256: Optional[str]) -> Dict[str, Any]:
    """Member 0: the pretrained featurizer phi_pt."""
    return {"index": 0, "kind": PRETRAINED, "dataset": None, "run": None, "sha256": sha256}


def fused_member() -> Dict[str, Any]:
    return {"index": None, "kind": FUSED, "dataset": None, "run": None, "sha256": None}


def init_record(member: Dict[str, Any], linear_probe_key: str,
                linear_probe_sha256: Optional[str] = None,
                members: Optional[List[Dict[str, Any]]] = None,
                lambdas: Optional[List[float]] = None, u: Optional[List[float]] = None,
                fusing_range: Optional[float] = None, robust: bool = False) -> Dict[str, Any]:
    """The ``init`` metadata of an init file (see the module docstring)."""
    return {"member": dict(member), "members": members, "lambdas": lambdas, "u": u,
            "fusing_range": fusing_range, "robust": bool(robust),
            "linear_probe_key": linear_probe_key, "linear_probe": linear_probe_sha256}
