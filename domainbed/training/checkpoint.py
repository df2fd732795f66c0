"""Full, resumable training checkpoints: model, optimisers, every RNG state, step, records."""

import random
from typing import Any, Dict, Optional

import numpy as np
import torch

from domainbed.lib import weights


def rng_states() -> Dict[str, Any]:
    states = {"python": random.getstate(), "numpy": np.random.get_state(),
              "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Dict[str, Any]) -> None:
    random.setstate(_as_tuple(states["python"]))
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"].cpu())
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])


def _as_tuple(obj):
    if isinstance(obj, (list, tuple)):
        return tuple(_as_tuple(x) for x in obj)
    return obj


def save_checkpoint(path: str, algorithm, step: int, n_records: int,
                    extra: Dict[str, Any], identity: Optional[Dict[str, Any]] = None) -> None:
    """Write the whole state atomically; ``step`` is the next step to run; ``identity``
    (the run's defining arguments, see ``identity.py``) goes into the metadata, which a
    resume reads without loading the tensors."""
    state = {
        "step": step,
        "n_records": n_records,
        "model": algorithm.state_dict(),
        "optimizers": {name: opt.state_dict() for name, opt in algorithm.optimizers().items()},
        "algorithm_extra": algorithm.extra_state(),
        "rng": rng_states(),
        "extra": extra,
    }
    from domainbed.lib.provenance import environment_info
    metadata: Dict[str, Any] = {"kind": "domainbed-checkpoint", "step": step,
                                "provenance": environment_info()}
    if identity is not None:
        metadata["run_identity"] = identity
    weights.save_state(path, state, metadata=metadata)


def load_checkpoint(path: str, algorithm, device) -> Dict[str, Any]:
    """Restore ``algorithm`` (model, optimisers, extra state) and the RNGs; returns the state."""
    state, _ = weights.load_state(path, device=device)
    algorithm.load_state_dict(state["model"])
    algorithm.load_extra_state(state["algorithm_extra"])
    optimizers = algorithm.optimizers()
    for name, opt_state in state["optimizers"].items():
        if name not in optimizers:
            raise RuntimeError(f"checkpoint has optimiser {name!r} that the algorithm lacks")
        optimizers[name].load_state_dict(opt_state)
    set_rng_states(state["rng"])
    return state
