"""Where a run starts: from its checkpoint (records truncated to match), or fresh (the
``--init_from`` weights applied, then the algorithm's ``after_init`` hook).

``resume_or_start(setup)`` comes first; below it, the checkpoint files (full, resumable
training checkpoints: model, optimisers, every RNG state, step, records) and ``--init_from``
(initialise the featurizer and/or the classifier from a weight file).

Called by ``run.train`` after ``setup.prepare_run``; next: ``loop`` (the steps from the
start point).
"""

import logging
import os
import random
from dataclasses import dataclass
from typing import Any, Dict, Optional

import numpy as np
import torch

from domainbed.errors import DomainBedError, WeightFileError
from domainbed.lib import misc, weights
from domainbed.lib.digests import verify_file
from domainbed.lib.weights import extract_state_dict, load_file
from domainbed.training.setup import RunSetup

log = logging.getLogger("domainbed.train")


@dataclass
class StartPoint:
    """The next step to run and the number of records results.jsonl holds before it."""

    step: int = 0
    n_records: int = 0


def resume_or_start(setup: RunSetup) -> StartPoint:
    """Resume when the run directory holds a checkpoint, else start fresh."""
    if os.path.exists(setup.checkpoint_path):
        return resume_from_checkpoint(setup)
    return start_fresh(setup)


def resume_from_checkpoint(setup: RunSetup) -> StartPoint:
    """Restore the algorithm, RNGs, best checkpoint and arithmetic from the checkpoint."""
    state = load_checkpoint(setup.checkpoint_path, setup.algorithm, setup.device)
    start = StartPoint(state["step"], state["n_records"])
    setup.best.load(state.get("extra") or {})
    setup.arithmetic.load(state.get("extra") or {})
    truncate_records(setup.results_path, start.n_records)
    log.info("resuming from step %d (%d records kept)", start.step, start.n_records)
    return start


def start_fresh(setup: RunSetup) -> StartPoint:
    """Drop records of an attempt that never checkpointed, apply ``--init_from``, and call
    the algorithm's ``after_init`` hook (e.g. freeze the featurizer for lp_steps)."""
    if os.path.exists(setup.results_path):
        os.unlink(setup.results_path)
    config = setup.config
    if config.init_from:
        loaded = apply_init(setup.algorithm, config.init_from, config.init_part, setup.device)
        log.info("initialised %s from %s", " and ".join(loaded), config.init_from)
    setup.algorithm.after_init(setup.init)
    return StartPoint()


def truncate_records(path: str, n_records: int) -> None:
    """Keep the first ``n_records`` complete lines of results.jsonl (drop later ones)."""
    if not os.path.exists(path):
        if n_records:
            raise DomainBedError(f"{path} is missing but the checkpoint expects {n_records} "
                                 "records; delete the run directory to start again")
        return
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    complete = lines[:-1]  # the last piece has no newline: incomplete
    if len(complete) < n_records:
        raise DomainBedError(f"{path} holds {len(complete)} records but the checkpoint expects "
                             f"{n_records}; delete the run directory to start again")
    misc.atomic_write_bytes(path, b"".join(line + b"\n" for line in complete[:n_records]))


# ---------------------------------------------------------------- checkpoint files

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
    (the run's defining arguments, see ``setup.identity_of``) goes into the metadata, which a
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


# ---------------------------------------------------------------- --init_from

PARTS = ("featurizer", "classifier")
# upstream saves the same tensors under network.0 / network.1 as well
_ALIASES = {"network.0.": "featurizer.", "network.1.": "classifier."}


def _normalise_keys(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for alias, canonical in _ALIASES.items():
            if key.startswith(alias):
                key = canonical + key[len(alias):]
                break
        out.setdefault(key, value)
    return out


def _part_of(state: Dict[str, torch.Tensor], part: str) -> Dict[str, torch.Tensor]:
    prefix = part + "."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_init_state(path: str, device) -> Dict[str, Dict[str, torch.Tensor]]:
    """``{"featurizer": {...}, "classifier": {...}}`` from a file (parts may be absent).

    A file that holds only one part may store it without prefix and name it in its metadata
    ``{"part": "featurizer"}`` (as pool members do).
    """
    content, metadata = load_file(path, device=device)
    state = _normalise_keys(extract_state_dict(content))
    part = metadata.get("part")
    if part in PARTS:
        return {part: state}
    return {p: _part_of(state, p) for p in PARTS if _part_of(state, p)}


def apply_init(algorithm, path: str, parts, device) -> list:
    """Copy the requested parts into the algorithm, checking every key and shape.

    ``parts`` is "all" (whatever the file holds), "featurizer", "classifier" or "both".
    Returns the parts loaded.
    """
    verify_file(path)  # a file with a manifest (probes, init files) must match it
    available = load_init_state(path, device)
    wanted = {"all": list(available), "both": list(PARTS)}.get(parts, [parts])
    if not wanted:
        raise WeightFileError(f"--init_from {path}: the file holds neither featurizer nor "
                              "classifier weights")
    for part in wanted:
        if part not in available:
            raise WeightFileError(
                f"--init_from {path}: the file has no {part} weights (it has: "
                f"{', '.join(available) or 'none'}); choose --init_part accordingly")
        module = getattr(algorithm, part)
        target = module.state_dict()
        source = available[part]
        missing = sorted(set(target) - set(source))
        unexpected = sorted(set(source) - set(target))
        if missing or unexpected:
            raise WeightFileError(
                f"--init_from {path}: {part} keys do not fit this model (missing: "
                f"{missing[:3]}, unexpected: {unexpected[:3]}); was it trained with the same "
                "backbone (hparams resnet18 / backbone)?")
        for key in target:
            value = source[key]
            if value.shape != target[key].shape:
                raise WeightFileError(
                    f"--init_from {path}: {part}.{key} has shape {tuple(value.shape)} but "
                    f"this model needs {tuple(target[key].shape)}; use a file trained with the "
                    "same backbone and number of classes, or --init_part featurizer")
        for key, value in source.items():
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise WeightFileError(
                    f"--init_from {path}: {part}.{key} holds NaN or infinite values (the "
                    "weights of a diverged run?); a run cannot start from them: use another "
                    "file")
        module.load_state_dict(source)
    return wanted
