"""``--init_from``: initialise the featurizer and/or the classifier from a weight file."""

from typing import Dict

import torch

from domainbed.errors import WeightFileError
from domainbed.lib.digests import verify_file
from domainbed.lib.weights import extract_state_dict, load_file

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


def init_info(path: str) -> dict:
    """What a run records about its initialisation: the file and its ``init`` metadata."""
    from domainbed.lib.weights import read_metadata
    info = {"path": path}
    info.update(read_metadata(path).get("init", {}))
    return info


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
