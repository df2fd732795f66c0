"""A model folder's weights in the keys of the libraries people load models with.

- ``timm``: for a ``timm:<name>`` backbone, the state dict of
  ``timm.create_model(name, num_classes=K)``: the featurizer's keys without their
  ``featurizer.model.`` prefix, the head under timm's classifier name (``head.fc``, ``fc``,
  ``head``, ...). Load it with timm alone::

      timm.create_model(name, pretrained=True, num_classes=K, **model_kwargs,
                        pretrained_cfg_overlay=dict(file=PATH, num_classes=K))

  (``num_classes`` in the overlay keeps timm from discarding the head; ``model_kwargs``
  holds ``img_size`` when a ViT was trained at another size.)
- ``torchvision``: for a ``resnet18`` / ``resnet50`` backbone,
  ``torchvision.models.resnet50(num_classes=K).load_state_dict(state)``.

Both need a linear head (not ``nonlinear_classifier``). Files are safetensors; the
instructions travel in their metadata and in the JSON next to them.
"""

import os
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from domainbed.lib.atomic import atomic_write_text
from domainbed.lib.weights import load_file, save_weights
from domainbed.model_folder.config import ModelFolderError, read_config
from domainbed.model_folder.layout import MODEL_FILE, json_text

FORMATS = ("timm", "torchvision")
TORCHVISION_RESNETS = ("resnet18", "resnet50")


def _folder_state(folder: str) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    config = read_config(folder)
    state, _ = load_file(os.path.join(folder, MODEL_FILE), device="cpu")
    if config["network"]["hparams"].get("nonlinear_classifier"):
        raise ModelFolderError("this model has a nonlinear (MLP) head, which timm and "
                               "torchvision models do not have; export needs a linear head")
    return config, state


def _strip(state: Mapping[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _check_fits(model: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    bad = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or bad:
        raise ModelFolderError(f"the weights do not map onto {what} (missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]}, wrong shapes {bad[:3]}); this "
                               "backbone cannot be exported to that format")


def _timm_kwargs(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The ``create_model`` arguments that rebuild the featurizer's geometry."""
    kwargs: Dict[str, Any] = {}
    channels, height, width = config["network"]["input_shape"]
    if channels != 3:
        kwargs["in_chans"] = int(channels)
    return kwargs


def timm_state(folder: str) -> Tuple[str, Dict[str, torch.Tensor], Dict[str, Any]]:
    """``(timm model name, timm state dict, create_model kwargs)`` of a ``timm:`` model."""
    from domainbed.networks.timm_backbones import create_timm_model, import_timm
    config, state = _folder_state(folder)
    backbone = config["network"]["backbone"]
    if not backbone.startswith("timm:"):
        raise ModelFolderError(f"backbone {backbone!r} is not a timm model; timm export needs "
                               "a 'timm:<name>' backbone (torchvision ResNets: --to torchvision)")
    name = backbone[len("timm:"):]
    timm = import_timm()
    kwargs = _timm_kwargs(config)
    featurizer = create_timm_model(name, config["network"]["input_shape"])
    if getattr(featurizer, "patch_embed", None) is not None:
        kwargs["img_size"] = list(config["network"]["input_shape"][1:])
    model = timm.create_model(name, pretrained=False, num_classes=config["num_classes"],
                              **kwargs)
    head = model.get_classifier()
    head_name = next(n for n, m in model.named_modules() if m is head)
    out = _strip(state, "featurizer.model.")
    out.update({f"{head_name}.{k}": v for k, v in _strip(state, "classifier.").items()})
    _check_fits(model, out, f"timm's {name} with {config['num_classes']} classes")
    return name, out, kwargs


def torchvision_state(folder: str) -> Tuple[str, Dict[str, torch.Tensor], Dict[str, Any]]:
    """``(torchvision builder name, state dict, builder kwargs)`` of a ResNet model."""
    import torchvision
    config, state = _folder_state(folder)
    backbone = config["network"]["backbone"]
    if backbone not in TORCHVISION_RESNETS:
        raise ModelFolderError(f"backbone {backbone!r} is not a torchvision ResNet "
                               f"({', '.join(TORCHVISION_RESNETS)}); timm backbones: --to timm")
    if config["network"]["input_shape"][0] != 3:
        raise ModelFolderError("torchvision ResNets take 3-channel images; this model was "
                               f"trained on {config['network']['input_shape'][0]} channel(s)")
    out = _strip(state, "featurizer.network.")
    out.update({f"fc.{k}": v for k, v in _strip(state, "classifier.").items()})
    model = getattr(torchvision.models, backbone)(weights=None,
                                                  num_classes=config["num_classes"])
    _check_fits(model, out, f"torchvision's {backbone} with {config['num_classes']} classes")
    return backbone, out, {"num_classes": config["num_classes"]}


def load_instructions(fmt: str, name: str, path: str, kwargs: Mapping[str, Any],
                      num_classes: int) -> str:
    """The Python lines that load an exported file with the target library alone."""
    base = os.path.basename(path)
    if fmt == "timm":
        extra = "".join(f", {k}={v!r}" for k, v in kwargs.items())
        return ("import timm\n"
                f"model = timm.create_model({name!r}, pretrained=True, "
                f"num_classes={num_classes}{extra},\n"
                f"    pretrained_cfg_overlay=dict(file={base!r}, num_classes={num_classes}))")
    return ("import torchvision\nfrom safetensors.torch import load_file\n"
            f"model = torchvision.models.{name}(num_classes={num_classes})\n"
            f"model.load_state_dict(load_file({base!r}))")


def export(folder: str, fmt: str, output: Optional[str] = None) -> Dict[str, Any]:
    """Write the folder's weights for ``fmt`` (timm or torchvision) to ``output`` (default
    ``<folder>/<fmt>/model.safetensors``) and a JSON with the model name, the class names,
    the input pipeline and the loading code beside it; returns that JSON's content."""
    if fmt not in FORMATS:
        raise ModelFolderError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    name, state, kwargs = (timm_state if fmt == "timm" else torchvision_state)(folder)
    config = read_config(folder)
    output = output or os.path.join(folder, fmt, MODEL_FILE)
    info = {"format": fmt, "model": name, "num_classes": config["num_classes"],
            "kwargs": kwargs, "class_names": config["class_names"], "input": config["input"],
            "load": load_instructions(fmt, name, output, kwargs, config["num_classes"])}
    save_weights(output, state, metadata={"export": info})
    atomic_write_text(os.path.splitext(output)[0] + ".json", json_text(info))
    return dict(info, path=output)
