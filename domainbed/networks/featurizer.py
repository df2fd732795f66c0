"""``Featurizer(input_shape, hparams)``: the backbone chosen from the input shape."""

import torch.nn as nn

from domainbed.networks.backbones import build_backbone


def backbone_name(input_shape, hparams) -> str:
    """``hparams['backbone']`` when set, else upstream's rule by input shape."""
    if hparams.get("backbone"):
        return hparams["backbone"]
    if len(input_shape) == 1:
        return "mlp"
    if tuple(input_shape[1:3]) in ((28, 28), (32, 32)):
        return "small_cnn"
    if tuple(input_shape[1:3]) == (224, 224):
        return "resnet18" if hparams.get("resnet18", False) else "resnet50"
    raise NotImplementedError(
        f"no default backbone for input shape {tuple(input_shape)}; set hparams 'backbone' "
        "to one of mlp, small_cnn, tiny_cnn, resnet18, resnet50")


def Featurizer(input_shape, hparams) -> nn.Module:
    """A backbone with an ``n_outputs`` attribute (the feature dimension)."""
    return build_backbone(backbone_name(input_shape, hparams), input_shape, hparams)
