"""Pretrained ResNet weights from the torch hub cache or an explicit file; never downloaded."""

import os
from typing import Optional

import torch

from domainbed.errors import WeightFileError
from domainbed.lib.weights import extract_state_dict, load_file

# torchvision's IMAGENET1K_V1 files, the weights upstream DomainBed and the paper use
HUB_FILES = {18: "resnet18-f37072fd.pth", 50: "resnet50-0676ba61.pth"}
HUB_URLS = {d: f"https://download.pytorch.org/models/{f}" for d, f in HUB_FILES.items()}


def hub_checkpoint_path(depth: int) -> str:
    return os.path.join(torch.hub.get_dir(), "checkpoints", HUB_FILES[depth])


def load_pretrained_resnet(model: torch.nn.Module, depth: int, path: Optional[str]) -> None:
    """Load ImageNet weights into a torchvision ResNet, from ``path`` or the hub cache."""
    if path is None:
        path = hub_checkpoint_path(depth)
        if not os.path.isfile(path):
            raise WeightFileError(
                f"pretrained ResNet-{depth} weights not found at {path}. Either put "
                f"{HUB_FILES[depth]} there (download {HUB_URLS[depth]} on a machine with "
                "internet), or pass the file explicitly with --hparams "
                "'{\"pretrained_path\": \"FILE\"}'; or train from scratch with --hparams "
                "'{\"pretrained\": false}'")
    content, _ = load_file(path, device="cpu")
    state = {k: v for k, v in extract_state_dict(content).items()}
    state = {k[len("network."):] if k.startswith("network.") else k: v for k, v in state.items()}
    expected = model.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing = [k for k in expected if not k.startswith("fc.") and k not in state]
    bad = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or bad:
        raise WeightFileError(
            f"{path} does not hold ResNet-{depth} weights (missing: {missing[:3]}, "
            f"wrong shapes: {bad[:3]}); pass a torchvision resnet{depth} state dict")
    model.load_state_dict(state, strict=False)
