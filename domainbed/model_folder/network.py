"""The network a model folder holds: featurizer then linear (or MLP) head, rebuilt from its
``config.json`` alone, with the state dict in the library's keys."""

from typing import Any, Dict, Mapping

import torch
import torch.nn as nn

from domainbed.model_folder.config import ModelFolderError

PARTS = ("featurizer.", "classifier.")


class ClassifierNetwork(nn.Module):
    """``classifier(featurizer(x))``: what every ERM-like algorithm's ``predict`` computes
    (ERM, the ratatouille family, MA, SWAD). ``predict`` is the same call, so the core's
    ``misc.accuracy`` scores it like an algorithm."""

    def __init__(self, featurizer: nn.Module, classifier: nn.Module):
        super().__init__()
        self.featurizer = featurizer
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.featurizer(x))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)


def build_network(config: Mapping[str, Any]) -> ClassifierNetwork:
    """The network of ``config`` with random weights (nothing is downloaded)."""
    from domainbed import networks
    spec = config["network"]
    hparams = dict(spec["hparams"], pretrained=False)
    featurizer = networks.Featurizer(tuple(spec["input_shape"]), hparams)
    classifier = networks.Classifier(featurizer.n_outputs, int(spec["num_classes"]),
                                     bool(hparams.get("nonlinear_classifier", False)))
    return ClassifierNetwork(featurizer, classifier)


def network_state(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The ``featurizer.*`` and ``classifier.*`` tensors of a model's state dict (aliases such
    as upstream's ``network.0.*`` and MA/SWAD's live network are left out), contiguous, on
    the CPU."""
    kept = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()
            if k.startswith(PARTS)}
    for part in PARTS:
        if not any(k.startswith(part) for k in kept):
            raise ModelFolderError(f"the weights have no {part}* tensors; a model folder holds "
                                   "a featurizer and a classifier (the core's layout)")
    return kept
