"""Pretrained weights for timm models, found locally and never downloaded.

Where they come from, in order: an explicit file (``hparams['pretrained_path']``:
safetensors, or a torch state dict read with ``weights_only=True``); the Hugging Face hub
cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``), where
timm's own hub files live; the torch hub cache (``<torch hub dir>/checkpoints/<file of the
weights' URL>``). With none of them, one line names each way to provide them.
"""

import os
from typing import Dict, Iterable, List, Optional, Sequence

import torch

from domainbed.errors import WeightFileError
from domainbed.lib.weights import extract_state_dict, load_file

HF_FILENAMES = ("model.safetensors", "pytorch_model.bin")
# prefixes that wrappers put in front of a model's own parameter names
WRAPPER_PREFIXES = ("module.", "model.", "network.")


def hf_cache_dir() -> str:
    """The Hugging Face hub cache as the environment sets it now."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache",
                                                     "huggingface")
    return os.path.join(home, "hub")


def find_in_hf_cache(repo_id: Optional[str], filenames: Sequence[str] = HF_FILENAMES
                     ) -> Optional[str]:
    """A cached file of the hub repository ``repo_id`` (no network), else None."""
    if not repo_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # timm depends on it; without it the cache cannot be read
        return None
    for filename in filenames:
        path = try_to_load_from_cache(repo_id, filename, cache_dir=hf_cache_dir())
        if isinstance(path, str) and os.path.isfile(path):
            return path
    return None


def torch_hub_checkpoint(url: Optional[str]) -> Optional[str]:
    """Where ``torch.hub`` keeps the file of ``url`` (whether or not it is there)."""
    if not url:
        return None
    name = os.path.basename(url.split("?")[0])
    return os.path.join(torch.hub.get_dir(), "checkpoints", name)


def _loadable(path: Optional[str]) -> bool:
    # .npz files (Google's original ViT weights) are not torch state dicts
    return bool(path) and os.path.isfile(path) and not path.endswith(".npz")


def locate_weights(model_name: str, hf_hub_id: Optional[str], url: Optional[str],
                   path: Optional[str] = None) -> str:
    """The weight file for ``model_name``; raises a one-line WeightFileError if none is here."""
    if path:
        if not os.path.isfile(path):
            raise WeightFileError(f"pretrained_path {path!r} does not exist; pass an existing "
                                  "safetensors or torch state-dict file")
        return path
    found = find_in_hf_cache(hf_hub_id)
    if found:
        return found
    hub_file = torch_hub_checkpoint(url)
    if _loadable(hub_file):
        return hub_file
    ways = ["pass a local file with --hparams '{\"pretrained_path\": \"FILE\"}' "
            "(safetensors or a torch state dict)"]
    if hf_hub_id:
        ways.append(f"put the Hugging Face repo {hf_hub_id} in the HF cache {hf_cache_dir()} "
                    f"(`huggingface-cli download {hf_hub_id}` on a machine with internet, "
                    "then copy the cache; set HF_HUB_CACHE to its folder)")
    if hub_file and not hub_file.endswith(".npz"):
        ways.append(f"put {os.path.basename(hub_file)} in {os.path.dirname(hub_file)} "
                    f"(from {url})")
    ways.append("train from scratch with --hparams '{\"pretrained\": false}'")
    raise WeightFileError(f"no pretrained weights for {model_name} here (nothing is "
                          f"downloaded); either " + "; or ".join(ways))


def _strip_wrapper_prefix(state: Dict[str, torch.Tensor], expected: Iterable[str]
                          ) -> Dict[str, torch.Tensor]:
    expected = set(expected)
    for prefix in WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state) and not (set(state) & expected):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The tensors of a safetensors file or a torch pickle (``weights_only=True``) on CPU."""
    content, _ = load_file(path, device="cpu")
    state = extract_state_dict(content)
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def map_state_dict(state: Dict[str, torch.Tensor], model: torch.nn.Module, source: str,
                   drop_prefixes: Sequence[str] = (), drop_keys: Sequence[str] = (),
                   adapt: Optional[Dict[str, object]] = None) -> Dict[str, torch.Tensor]:
    """``state`` renamed and reshaped for ``model``, or a WeightFileError naming the misfit.

    Wrapper prefixes are stripped; the classifier (``drop_prefixes``) and ``drop_keys`` are
    dropped; ``adapt[name](tensor, target_shape)`` reshapes a tensor whose shape differs
    (position embeddings, first convolution). Every model tensor must be present with its
    shape, and nothing else may be left.
    """
    expected = model.state_dict()
    state = _strip_wrapper_prefix(state, expected)
    state = {k: v for k, v in state.items()
             if k not in drop_keys and not any(k.startswith(p + ".") for p in drop_prefixes)}
    adapt = adapt or {}
    for key, fn in adapt.items():
        if key in state and key in expected and state[key].shape != expected[key].shape:
            state[key] = fn(state[key], expected[key].shape)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    bad = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}" for k in state
           if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or bad:
        problems: List[str] = []
        if missing:
            problems.append(f"missing {len(missing)} tensors, e.g. {missing[:3]}")
        if unexpected:
            problems.append(f"{len(unexpected)} unknown tensors, e.g. {unexpected[:3]}")
        if bad:
            problems.append(f"wrong shapes: {bad[:3]}")
        raise WeightFileError(f"{source} does not fit {type(model).__name__} "
                              f"({'; '.join(problems)}); pass the weights of this exact model")
    return {k: v.to(expected[k].dtype) for k, v in state.items()}
