"""Which pool member(s) initialise a target run (the paper code's mapping).

Ratatouille / inter-training: with n auxiliary datasets in the pool's fixed order, a run
with ``hparams_seed`` s starts from slot ``s mod (n + 1)``: slot 0 is the pretrained
featurizer, slot k > 0 is dataset k-1, run ``s mod n_runs(dataset)`` in the pool's order.
With 4 datasets of 4 runs and seeds 0..19, each slot is used 4 times and every auxiliary
run exactly once (slot j > 0 gets seeds j, j+5, j+10, j+15, whose residues mod 4 are
j, j+1, j+2, j+3 mod 4).

Fusing: the init is ``sum_i lambda_i phi_i`` over the pretrained featurizer and one run
per auxiliary dataset (run ``s mod n_runs(dataset)``, the same rule), with
``lambda = softmax(r * u)``, ``u_i ~ U[0, 1)`` drawn from
``np.random.RandomState(seed_hash("fusing", hparams_seed, trial_seed))`` and
``r = fusing_range`` (4 in the paper; 0 gives the uniform average).
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import torch

from domainbed.lib.seeds import seed_hash
from domainbed_aux.pool.members import AuxPool, PoolError, PoolMember

DEFAULT_FUSING_RANGE = 4.0


def _check_seed(hparams_seed: int) -> int:
    if int(hparams_seed) != hparams_seed or hparams_seed < 0:
        raise PoolError(f"hparams_seed must be a non-negative integer, got {hparams_seed!r}")
    return int(hparams_seed)


def init_slot(hparams_seed: int, n_aux_datasets: int) -> int:
    """``hparams_seed mod (n + 1)``: 0 = pretrained, k > 0 = auxiliary dataset k-1."""
    return _check_seed(hparams_seed) % (n_aux_datasets + 1)


def run_of_dataset(pool: AuxPool, dataset: str, hparams_seed: int) -> PoolMember:
    """Run ``hparams_seed mod n_runs`` of ``dataset``, in the pool's fixed order."""
    runs = pool.runs_of(dataset)
    return runs[_check_seed(hparams_seed) % len(runs)]


@dataclass(frozen=True)
class InitChoice:
    """The featurizer a run starts from: ``member`` is ``pool.members[member_index]``."""

    slot: int
    member_index: int
    member: PoolMember

    def to_record(self) -> Dict[str, Any]:
        """What every result record of the run should carry about its initialisation."""
        m = self.member
        return {"init_slot": self.slot, "init_member": self.member_index, "init_kind": m.kind,
                "init_dataset": m.dataset, "init_file": m.file, "init_sha256": m.sha256,
                "init_hparams_seed": m.hparams_seed, "init_trial_seed": m.trial_seed}


def choose_init(pool: AuxPool, hparams_seed: int) -> InitChoice:
    """The initialisation of the target run with ``hparams_seed`` (see module docstring)."""
    datasets = pool.datasets
    slot = init_slot(hparams_seed, len(datasets))
    member = pool.pretrained if slot == 0 else run_of_dataset(pool, datasets[slot - 1],
                                                              hparams_seed)
    return InitChoice(slot, pool.index_of(member), member)


def fusing_coefficients(n_members: int, hparams_seed: int, trial_seed: int,
                        fusing_range: float = DEFAULT_FUSING_RANGE):
    """``(u, lambdas)``: ``u ~ U[0, 1)^n`` fixed by the seeds, ``lambdas = softmax(r u)``."""
    if not fusing_range >= 0:
        raise PoolError(f"fusing_range must be >= 0 (got {fusing_range!r}); 0 fuses uniformly")
    rng = np.random.RandomState(seed_hash("fusing", _check_seed(hparams_seed), trial_seed))
    u = rng.uniform(0.0, 1.0, size=n_members)
    logits = fusing_range * u
    weights = np.exp(logits - logits.max())
    return u, weights / weights.sum()


@dataclass(frozen=True)
class FusingChoice:
    """The members fused into a run's init and their coefficients."""

    member_indices: List[int]
    members: List[PoolMember]
    u: List[float]
    lambdas: List[float]
    fusing_range: float

    def to_record(self) -> Dict[str, Any]:
        return {"fusing_range": self.fusing_range, "fusing_members": list(self.member_indices),
                "fusing_datasets": [m.dataset for m in self.members],
                "fusing_u": list(self.u), "fusing_lambdas": list(self.lambdas)}


def choose_fusing(pool: AuxPool, hparams_seed: int, trial_seed: int,
                  fusing_range: float = DEFAULT_FUSING_RANGE) -> FusingChoice:
    """Pretrained featurizer + run ``hparams_seed mod n_runs`` of each dataset, with lambdas."""
    members = [pool.pretrained] + [run_of_dataset(pool, d, hparams_seed) for d in pool.datasets]
    u, lambdas = fusing_coefficients(len(members), hparams_seed, trial_seed, fusing_range)
    return FusingChoice([pool.index_of(m) for m in members], members,
                        [float(x) for x in u], [float(x) for x in lambdas], float(fusing_range))


def fused_featurizer(choice: FusingChoice,
                     pretrained_state: Optional[Mapping[str, torch.Tensor]] = None
                     ) -> Dict[str, torch.Tensor]:
    """``sum_i lambda_i phi_i``. ``pretrained_state`` is needed when member 0 has no file."""
    from domainbed_aux.averaging import weighted_average
    sources = []
    for index, member in zip(choice.member_indices, choice.members):
        if member.path is not None:
            sources.append((f"member{index}", member.path))
        elif member.kind == "pretrained" and pretrained_state is not None:
            sources.append(("pretrained", pretrained_state))
        else:
            raise PoolError(f"pool member {index} ({member.kind}) has no weight file; pass "
                            "pretrained_state (the pretrained featurizer's state dict)")
    return weighted_average(sources, choice.lambdas)
