"""What data-aware rules run members on: the network of a state dict, training-domain
batches, and the names of a model's parameters in its state dict."""

from typing import Dict, List, Tuple

import torch


def parameter_keys(model: torch.nn.Module) -> Dict[str, torch.nn.Parameter]:
    """Every state-dict key of ``model`` that holds a parameter (aliases included)."""
    params = {id(p): p for p in model.parameters()}
    return {key: params[id(value)] for key, value in model.state_dict(keep_vars=True).items()
            if id(value) in params}


def linear_layers(model: torch.nn.Module) -> List[Tuple[torch.nn.Linear, List[str], List[str]]]:
    """``(layer, weight keys, bias keys)`` of every ``nn.Linear`` of ``model`` (each layer
    once; the keys include aliases)."""
    keys = parameter_keys(model)
    out = []
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            weight = [k for k, p in keys.items() if p is module.weight]
            bias = [k for k, p in keys.items() if module.bias is not None and p is module.bias]
            out.append((module, weight, bias))
    return out


def collect(batches) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    return [(x, y) for x, y in batches]


def log_likelihood(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``log p(y | x)`` of each example under the model's ``predict`` (softmax over the
    logits; one logit: a sigmoid, as ``misc.accuracy`` reads it)."""
    logits = model.predict(x) if hasattr(model, "predict") else model(x)
    if logits.size(1) == 1:
        p1 = torch.nn.functional.logsigmoid(logits[:, 0])
        p0 = torch.nn.functional.logsigmoid(-logits[:, 0])
        return torch.where(y.to(torch.bool), p1, p0)
    return torch.log_softmax(logits, 1).gather(1, y.long().view(-1, 1))[:, 0]


def device_of(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


