"""Composed init files for the core's ``--init_from``: ``(w_lp, phi)`` in one weight file.

A composed file holds ``featurizer.*`` (a pool member, member 0 = phi_pt, or a fused
featurizer) and ``classifier.*`` (the shared linear probe), with the ``init`` metadata of
:mod:`domainbed_aux.init.record`.

The core copies that ``init`` dict into every result record of the run. A file's name is
the hash of what identifies its content (probe identity, member file hashes, lambdas), so
each distinct init is written once (atomically) and shared by every run that needs it;
the name is known before the probe is trained, which lets a sweep list its jobs first.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch

from domainbed.lib.digests import verify_file

from domainbed_aux.init.choice import (DEFAULT_FUSING_RANGE, FusingChoice, choose_fusing,
                                       choose_init, fused_featurizer)
from domainbed_aux.init.probe import read_linear_probe
from domainbed_aux.init.record import InitRecord, fused_member, pretrained_member, save_init_file
from domainbed_aux.pool.members import AuxPool, PoolError, PoolMember, content_hash

INITS_DIR = "inits"


def member_record(pool: Optional[AuxPool], index: int) -> Dict[str, Any]:
    """What a record states about one pool member (member 0 without a pool: phi_pt)."""
    if pool is None:
        return pretrained_member(None)
    m: PoolMember = pool.members[index]
    return {"index": index, "kind": m.kind, "dataset": m.dataset, "run": m.run_dir,
            "sha256": m.sha256, "hparams_seed": m.hparams_seed, "trial_seed": m.trial_seed,
            "name": m.name}


@dataclass
class InitRequest:
    """The init of one target run, before any file is written."""

    probe_key: str
    probe_path: str
    member: Dict[str, Any]
    members: Optional[List[Dict[str, Any]]] = None  # fusing: every fused member
    lambdas: Optional[List[float]] = None
    u: Optional[List[float]] = None
    fusing_range: Optional[float] = None
    robust: bool = False

    def identity(self) -> Dict[str, Any]:
        return {"probe": self.probe_key, "member": self.member, "members": self.members,
                "lambdas": self.lambdas, "robust": self.robust}

    def file_name(self) -> str:
        text = json.dumps(self.identity(), sort_keys=True)
        return "init_" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:24] + ".safetensors"


def plan_init(pool: Optional[AuxPool], probe_key: str, probe_path: str, hparams_seed: int,
              trial_seed: int, fusing: bool = False,
              fusing_range: float = DEFAULT_FUSING_RANGE, robust: bool = False) -> InitRequest:
    """The member(s) a run starts from, by the paper code's mapping (``init_choice``).

    Without a pool every run starts from member 0 (phi_pt), as vanilla fine-tuning and
    model soups do.
    """
    if fusing:
        if pool is None:
            raise PoolError("fusing needs an auxiliary pool: give --aux_dir")
        choice = choose_fusing(pool, hparams_seed, trial_seed, fusing_range)
        members = [member_record(pool, i) for i in choice.member_indices]
        return InitRequest(probe_key, probe_path, fused_member(), members, choice.lambdas,
                           choice.u, choice.fusing_range, robust)
    if pool is None:
        return InitRequest(probe_key, probe_path, member_record(None, 0), robust=robust)
    choice = choose_init(pool, hparams_seed)
    return InitRequest(probe_key, probe_path, member_record(pool, choice.member_index),
                       robust=robust)


def init_path(request: InitRequest, cache_dir: str) -> str:
    return os.path.join(os.path.abspath(cache_dir), INITS_DIR, request.file_name())


def _featurizer_of(request: InitRequest, pool: Optional[AuxPool],
                   phi_pt: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    from domainbed.lib.weights import extract_state_dict, load_file
    if request.members is not None:
        choice = FusingChoice([m["index"] for m in request.members],
                              [pool.members[m["index"]] for m in request.members],
                              list(request.u), list(request.lambdas),
                              float(request.fusing_range))
        return fused_featurizer(choice, pretrained_state=phi_pt)
    index = request.member["index"]
    if pool is None or index == 0 and pool.members[0].path is None:
        return phi_pt
    content, _ = load_file(pool.members[index].path, device="cpu")
    return dict(extract_state_dict(content))


def compose_init_file(request: InitRequest, pool: Optional[AuxPool], cache_dir: str,
                      probe_sha256: str) -> str:
    """Write (if missing) the file for ``request``; returns its path.

    The probe file must exist. Raises PoolError when the featurizer does not fit the
    probe's (other keys or shapes).
    """
    path = init_path(request, cache_dir)
    if os.path.exists(path):
        verify_file(path)  # a tampered file stops the launch, not only its runs
        return path
    phi_pt, classifier, _ = read_linear_probe(request.probe_path)
    featurizer = _featurizer_of(request, pool, phi_pt)
    bad = sorted(set(featurizer) ^ set(phi_pt)) or sorted(
        k for k in phi_pt if featurizer[k].shape != phi_pt[k].shape)
    if bad:
        raise PoolError(f"the init featurizer ({request.member.get('kind')} member "
                        f"{request.member.get('index')}) does not fit the pretrained "
                        f"featurizer of the linear probe (differs at {bad[:3]}); the pool and "
                        "the target runs must use the same backbone")
    member = dict(request.member)
    if member["kind"] == "pretrained" and member.get("sha256") is None:
        member["sha256"] = content_hash(phi_pt)
    record = InitRecord(member, request.probe_key, probe_sha256, request.members,
                        request.lambdas, request.u, request.fusing_range, request.robust)
    return save_init_file(path, featurizer, classifier, record)
