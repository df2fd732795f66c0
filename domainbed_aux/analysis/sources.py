"""Where the analyses get weights and data from: run directories, weight files, evaluators.

A *source* is a run directory or a weight file (a full model, a best checkpoint, a pool
member holding only a featurizer, a linear probe, an init file...). A run directory means
the weights its soups would average: by default its best-ID-validation checkpoint
(``model_best.safetensors``; MA and SWAD: their averaged final model), or its final weights
with ``weights="final"`` (see ``scoring.runs.RunInfo``). Scores go through
``domainbed_aux.scoring.evaluation.RunEvaluator``: the exact splits of a reference run.
"""

import os
from typing import Dict, Mapping, Optional

import torch

from domainbed.errors import DomainBedError
from domainbed.lib.weights import extract_state_dict, load_file
from domainbed.training.start import load_init_state
from domainbed_aux.parts import PART_PREFIXES

StateDict = Dict[str, torch.Tensor]

# evaluation split names accepted by the analyses (see domainbed_aux.scoring.evaluation)
SPLIT_HELP = ("test_in (env{test}_in, the tables' test split), id_val (training envs' out "
              "splits, pooled), test_full (the whole test domain)")


def weight_file(source: str, weights: str = "best") -> str:
    """The weight file of a source: a finished run's ``weights`` (best or final), or the
    file itself."""
    if os.path.isdir(source):
        from domainbed_aux.scoring.runs import read_run
        return read_run(source, weights).model_path
    if not os.path.isfile(source):
        raise DomainBedError(f"{source}: neither a run directory nor a weight file")
    return source


def load_state(source: str, weights: str = "best") -> StateDict:
    """The full state dict of a source (a run or a model file), on the CPU."""
    content, _ = load_file(weight_file(source, weights))
    return dict(extract_state_dict(content))


def load_parts(source: str, weights: str = "best") -> Dict[str, StateDict]:
    """``{"featurizer": {...}, "classifier": {...}}`` of a source, keys without prefix.

    Featurizer-only files (pool members: unprefixed keys, ``pool_member`` metadata) give
    only ``featurizer``.
    """
    path = weight_file(source, weights)
    parts = load_init_state(path, "cpu")
    if not parts:
        content, metadata = load_file(path, device="cpu")
        if "pool_member" in metadata:
            return {"featurizer": dict(extract_state_dict(content))}
        raise DomainBedError(f"{source}: no featurizer or classifier weights in this file "
                             "(keys featurizer.* / classifier.*, or a pool member)")
    return parts


def compose(template: Mapping[str, torch.Tensor], parts: Mapping[str, Mapping[str, torch.Tensor]]
            ) -> StateDict:
    """``template`` with every featurizer / classifier key taken from ``parts``.

    All the names a model uses for a part (``featurizer.*``, ``network.0.*``,
    ``network_live.0.*``) get the same tensors. Raises when a part does not fit.
    """
    out = dict(template)
    for part, prefixes in PART_PREFIXES.items():
        source = parts.get(part)
        if source is None:
            continue
        found = 0
        for key in template:
            prefix = next((p for p in prefixes if key.startswith(p)), None)
            if prefix is None:
                continue
            inner = key[len(prefix):]
            if inner not in source:
                raise DomainBedError(f"the {part} weights lack {inner!r} that the model needs; "
                                     "were they trained with the same backbone?")
            if source[inner].shape != template[key].shape:
                raise DomainBedError(
                    f"{part}.{inner} has shape {tuple(source[inner].shape)} but the model "
                    f"needs {tuple(template[key].shape)}; use weights of the same backbone "
                    "and number of classes")
            out[key] = source[inner].to(template[key].dtype)
            found += 1
        if not found:
            raise DomainBedError(f"the model has no {part} to replace")
    return out


def evaluator_for(run_source: str, data_dir: Optional[str] = None):
    """A ``RunEvaluator`` on the splits (and model architecture) of a finished run."""
    from domainbed_aux.scoring.evaluation import RunEvaluator
    from domainbed_aux.scoring.runs import read_run
    if not os.path.isdir(run_source):
        raise DomainBedError(f"{run_source}: the data and splits come from a run directory; "
                             "pass one (e.g. --run_dir, or a run as --head)")
    return RunEvaluator(read_run(run_source), data_dir)


def check_split(evaluator, split: str) -> None:
    if split in ("test_in", "test_full") and not evaluator.test_envs:
        raise DomainBedError(f"split {split!r}: the run {evaluator.run.run_dir} has no test "
                             "environment (--test_envs -1); use --split id_val")
