"""timm backbones: ``timm:<model name>``, and upstream's ``resnet50_augmix`` and ``dinov2``.

timm is an optional extra, imported when such a backbone is built. The model is created
without a classifier (``num_classes=0``) and without downloading anything; its pretrained
weights come from ``timm_weights`` (a local file or a local cache). Vision transformers are
built at the input's size: the patch grid follows the image and the position embeddings of
the weights are interpolated to it.
"""

from typing import Dict, Sequence, Tuple

import torch
import torch.nn as nn

from domainbed.networks.backbones import BACKBONES, BackboneError, TIMM_PREFIX
from domainbed.networks.batch_norm import FreezableBatchNorm
from domainbed.networks.timm_weights import locate_weights, map_state_dict, read_state_dict

TIMM_EXTRA = "pip install timm (or the package's extra: pip install -e \".[timm]\")"
RESNET50_AUGMIX = "resnet50.ram_in1k"  # upstream's resnet50_augmix weights
DINOV2 = "vit_base_patch14_dinov2.lvd142m"  # the architecture of torch hub's dinov2_vitb14


def import_timm():
    """The timm module, or a BackboneError naming the extra to install."""
    try:
        import timm
    except ImportError:
        raise BackboneError(f"timm backbones need the timm package, which is not installed; "
                            f"{TIMM_EXTRA}") from None
    return timm


def timm_data_config(name: str) -> dict:
    """The input pipeline of timm model ``name`` as timm resolves it from its pretrained
    configuration (``input_size``, ``interpolation``, ``mean``, ``std``, ``crop_pct``);
    a model without one gets timm's defaults (ImageNet statistics)."""
    timm = import_timm()
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg
    if not timm.is_model(name):
        raise BackboneError(f"unknown timm model {name!r}; list them with "
                            f"`python -c \"import timm; print(timm.list_models('*vit*'))\"` "
                            f"and set --hparams '{{\"backbone\": \"{TIMM_PREFIX}<name>\"}}'")
    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError:  # an architecture without any pretrained configuration
        cfg = None
    return dict(resolve_data_config(pretrained_cfg=cfg.to_dict() if cfg else {}))


def _classifier_names(cfg: dict) -> Tuple[str, ...]:
    names = cfg.get("classifier") or ()
    return (names,) if isinstance(names, str) else tuple(names)


def _spatial_size(input_shape) -> Tuple[int, int]:
    if len(input_shape) != 3:
        raise BackboneError(f"timm backbones take images (C, H, W); got input shape "
                            f"{tuple(input_shape)}; use the 'mlp' backbone for vectors")
    return int(input_shape[1]), int(input_shape[2])


def create_timm_model(name: str, input_shape) -> nn.Module:
    """``name`` without classifier, random weights, for ``input_shape`` (ViTs: its grid)."""
    timm = import_timm()
    if not timm.is_model(name):
        raise BackboneError(f"unknown timm model {name!r}; list them with "
                            f"`python -c \"import timm; print(timm.list_models('*vit*'))\"` "
                            f"and set --hparams '{{\"backbone\": \"{TIMM_PREFIX}<name>\"}}'")
    kwargs = {"num_classes": 0, "in_chans": int(input_shape[0]), "pretrained": False}
    model = timm.create_model(name, **kwargs)
    patch_embed = getattr(model, "patch_embed", None)
    size = _spatial_size(input_shape)
    if patch_embed is not None and tuple(getattr(patch_embed, "img_size", size)) != size:
        patch = tuple(patch_embed.patch_size)
        if size[0] % patch[0] or size[1] % patch[1]:
            raise BackboneError(
                f"{name} cuts images into {patch[0]}x{patch[1]} patches, so the input size "
                f"{size[0]}x{size[1]} must be a multiple of it; set --hparams "
                f"'{{\"image_size\": {max(patch[0], size[0] // patch[0] * patch[0])}}}'")
        try:
            model = timm.create_model(name, img_size=size, **kwargs)
        except (TypeError, ValueError, AssertionError) as exc:
            raise BackboneError(f"{name} cannot be built for {size[0]}x{size[1]} inputs "
                                f"({exc}); use its native size "
                                f"{tuple(patch_embed.img_size)}") from None
    return model


def _adapters(model: nn.Module, cfg: dict) -> Dict[str, object]:
    """Reshapers for the tensors that legitimately change shape with the input."""
    adapters: Dict[str, object] = {}
    if getattr(model, "pos_embed", None) is not None and hasattr(model, "patch_embed"):
        def resample(tensor, shape):
            from timm.layers import resample_abs_pos_embed
            prefix = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
            return resample_abs_pos_embed(tensor, list(model.patch_embed.grid_size),
                                          num_prefix_tokens=prefix)
        adapters["pos_embed"] = resample
    if cfg.get("first_conv"):
        def adapt_channels(tensor, shape):
            if tensor.ndim != 4 or tensor.shape[1] == shape[1]:
                return tensor
            # channel i reuses pretrained channel i mod C, as for torchvision ResNets
            return tensor[:, [i % tensor.shape[1] for i in range(shape[1])]].clone()
        adapters[cfg["first_conv"] + ".weight"] = adapt_channels
    return adapters


def load_timm_weights(model: nn.Module, name: str, hparams,
                      drop_keys: Sequence[str] = (), hub_url=None) -> str:
    """Load pretrained weights into ``model`` (see ``timm_weights``); returns the file used."""
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    path = locate_weights(name, cfg.get("hf_hub_id"), hub_url or cfg.get("url"),
                          hparams.get("pretrained_path"))
    state = map_state_dict(read_state_dict(path), model, path,
                           drop_prefixes=_classifier_names(cfg), drop_keys=drop_keys,
                           adapt=_adapters(model, cfg))
    model.load_state_dict(state, strict=True)
    return path


class TimmBackbone(FreezableBatchNorm):
    """A timm model's pooled features, with feature dropout.

    Dropout is ``vit_dropout`` for vision transformers, ``resnet_dropout`` otherwise; with
    ``vit_attn_tune`` only a transformer's attention parameters train. Batch norm, where the
    model has it, is frozen when ``freeze_bn``; layer norm is left alone.
    """

    DROP_KEYS: Tuple[str, ...] = ()
    HUB_URL = None

    def __init__(self, model_name: str, input_shape, hparams):
        super().__init__()
        self.model_name = model_name
        self.model = create_timm_model(model_name, input_shape)
        self.weights_file = None
        if hparams.get("pretrained", True):
            self.weights_file = load_timm_weights(self.model, model_name, hparams,
                                                  self.DROP_KEYS, self.HUB_URL)
        self.is_transformer = hasattr(self.model, "patch_embed")
        self.n_outputs = self._feature_dim()
        rate = hparams.get("vit_dropout" if self.is_transformer else "resnet_dropout", 0.0)
        self.dropout = nn.Dropout(rate)
        if self.is_transformer and hparams.get("vit_attn_tune", False):
            for pname, param in self.model.named_parameters():
                param.requires_grad = "attn" in pname
        self._set_freeze_bn(hparams.get("freeze_bn", False))

    def _feature_dim(self) -> int:
        return int(getattr(self.model, "head_hidden_size", None) or self.model.num_features)

    def forward(self, x):
        return self.dropout(self.model(x))


class DinoV2(TimmBackbone):
    """Upstream's DINOv2 ViT-B/14 features: the class tokens of the last 4 blocks and the
    mean patch token of the last block, each after the final norm (5 x 768 = 3840)."""

    DROP_KEYS = ("mask_token",)  # DINOv2's own checkpoint has it; the timm model does not
    HUB_URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth"
    N_BLOCKS = 4

    def __init__(self, input_shape, hparams, model_name: str = DINOV2):
        if input_shape[0] != 3:
            raise BackboneError(f"dinov2 needs 3-channel inputs, got {input_shape[0]}; set "
                                "--hparams '{\"image_channels\": 3}' or use another backbone")
        super().__init__(model_name, input_shape, hparams)

    def _feature_dim(self) -> int:
        return (self.N_BLOCKS + 1) * int(self.model.num_features)

    def forward(self, x):
        m = self.model
        x = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(x))))
        outputs = []
        first_kept = len(m.blocks) - self.N_BLOCKS
        for i, block in enumerate(m.blocks):
            x = block(x)
            if i >= first_kept:
                outputs.append(m.norm(x))
        tokens = [out[:, 0] for out in outputs]
        tokens.append(outputs[-1][:, m.num_prefix_tokens:].mean(dim=1))
        return self.dropout(torch.cat(tokens, dim=1))


def build_timm_backbone(model_name: str, input_shape, hparams) -> nn.Module:
    """The backbone of ``timm:<model_name>``."""
    if not model_name:
        raise BackboneError(f"backbone {TIMM_PREFIX!r} names no model; e.g. "
                            f"{TIMM_PREFIX}vit_base_patch16_224.augreg_in21k")
    return TimmBackbone(model_name, input_shape, hparams)


@BACKBONES.register("resnet50_augmix")
def _resnet50_augmix(input_shape, hparams):
    return TimmBackbone(RESNET50_AUGMIX, input_shape, hparams)


@BACKBONES.register("dinov2")
def _dinov2(input_shape, hparams):
    return DinoV2(input_shape, hparams)
