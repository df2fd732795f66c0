"""``load_model(path)``: a model folder as a ready ``torch.nn.Module``."""

import logging
import os
from typing import Optional

import torch

from domainbed.lib.weights import load_file
from domainbed.model_folder.config import ModelFolderError, read_config
from domainbed.model_folder.layout import CONFIG_FILE, MODEL_FILE
from domainbed.model_folder.network import ClassifierNetwork, build_network

log = logging.getLogger(__name__)


def folder_of(path: str) -> str:
    """The model folder of ``path``: the folder itself, or the folder holding the
    ``model.safetensors`` or ``config.json`` given."""
    if os.path.isfile(path) and os.path.basename(path) in (MODEL_FILE, CONFIG_FILE):
        return os.path.dirname(os.path.abspath(path))
    return path


def _read_safetensors(path: str):
    """The tensors of a safetensors file; anything else (a pickle: code could run) is
    refused unread."""
    from safetensors import safe_open
    try:
        with safe_open(path, framework="pt", device="cpu"):
            pass
    except Exception as exc:  # safetensors raises its own error types
        raise ModelFolderError(f"{path}: refused: not a safetensors file ({exc}); a model "
                               "folder's weights are safetensors, never unpickled; "
                               "re-export the model folder") from None
    state, _ = load_file(path, device="cpu")
    return state


def load_model(path: str, device: Optional[str] = None) -> ClassifierNetwork:
    """The network of the model folder ``path``, in eval mode on ``device`` (default: the
    GPU when there is one, else the CPU; ``DOMAINBED_DEVICE`` overrides).

    The module has ``class_names`` (label order), ``transform`` (image -> input tensor, the
    pipeline the model was trained with; None when its data had no image files),
    ``input_spec`` and ``config``. Nothing is downloaded and no code in a file runs: the
    weights are safetensors, rebuilt into the architecture ``config.json`` names, every
    key and shape checked.
    """
    from domainbed.datasets.input_spec import InputSpec
    from domainbed.lib.device import get_device
    folder = folder_of(path)
    config = read_config(folder)
    weights = os.path.join(folder, MODEL_FILE)
    if not os.path.isfile(weights):
        raise ModelFolderError(f"{folder!r} has no {MODEL_FILE}; re-export the model folder")
    network = build_network(config)
    state = _read_safetensors(weights)
    try:
        result = network.load_state_dict(state, strict=False)
        problems = (f"missing {result.missing_keys[:3]}, unexpected "
                    f"{result.unexpected_keys[:3]}"
                    if result.missing_keys or result.unexpected_keys else None)
    except RuntimeError as exc:  # a shape that differs
        problems = " ".join(str(exc).split())[:300]
    if problems:
        raise ModelFolderError(f"{weights} does not fit the network of {CONFIG_FILE} "
                               f"({problems}); the folder's files do not belong together: "
                               "re-export it")
    device = torch.device(device) if device is not None else get_device()
    network.to(device).eval()
    network.config = config
    network.class_names = list(config["class_names"])
    network.input_spec = InputSpec.from_json(config["input"]) if config["input"] else None
    network.transform = network.input_spec.eval_transform() if network.input_spec else None
    return network
