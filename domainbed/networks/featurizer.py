"""``Featurizer(input_shape, hparams)``: the backbone named by hparams or chosen by shape."""

import torch.nn as nn

from domainbed.networks.backbones import BACKBONES, TIMM_PREFIX, BackboneError


def known_backbones() -> str:
    return ", ".join(BACKBONES.names() + [TIMM_PREFIX + "<timm model name>"])


def build_backbone(name: str, input_shape, hparams) -> nn.Module:
    """The backbone ``name`` for inputs of ``input_shape``; unknown names raise BackboneError."""
    if name.startswith(TIMM_PREFIX):
        from domainbed.networks.timm_backbones import build_timm_backbone
        return build_timm_backbone(name[len(TIMM_PREFIX):], input_shape, hparams)
    if name not in BACKBONES:
        raise BackboneError(
            f"unknown backbone {name!r}; known backbones: {known_backbones()}; fix the "
            "'backbone' entry of --hparams")
    return BACKBONES.get(name)(input_shape, hparams)


def backbone_name(input_shape, hparams) -> str:
    """``hparams['backbone']`` when set, else upstream's rule by input shape.

    Upstream's rule: vectors -> ``mlp``; 28x28 -> ``small_cnn`` (MNIST_CNN); 32x32 ->
    ``wide_resnet`` (WRN-16-2); 224x224 -> ``dinov2`` if ``vit`` and ``dinov2``, else
    ``resnet50_augmix`` / ``resnet18`` / ``resnet50`` by those switches. Unlike upstream,
    other image sizes (``image_size`` 64, 96, ...) take the 224x224 rule: those backbones
    adapt to any size.
    """
    if hparams.get("backbone"):
        return hparams["backbone"]
    shape = tuple(input_shape)
    if len(shape) == 1:
        return "mlp"
    if len(shape) != 3:
        raise BackboneError(f"no default backbone for input shape {shape}; set hparams "
                            f"'backbone' to one of {known_backbones()}")
    if shape[1:3] == (28, 28):
        return "small_cnn"
    if shape[1:3] == (32, 32):
        return "wide_resnet"
    if hparams.get("vit", False):
        if hparams.get("dinov2", False):
            return "dinov2"
        raise BackboneError("hparams 'vit' without 'dinov2' selects no model (as upstream); "
                            "set --hparams '{\"vit\": true, \"dinov2\": true}' or name a timm "
                            "ViT, e.g. '{\"backbone\": \"timm:vit_base_patch16_224.augreg_in21k\"}'")
    if hparams.get("resnet50_augmix", False):
        return "resnet50_augmix"
    return "resnet18" if hparams.get("resnet18", False) else "resnet50"


def Featurizer(input_shape, hparams) -> nn.Module:
    """A backbone with an ``n_outputs`` attribute (the feature dimension)."""
    return build_backbone(backbone_name(input_shape, hparams), input_shape, hparams)
