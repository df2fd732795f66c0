"""The image-folder transforms on uint8 tensors (torchvision.transforms.v2).

Same steps and parameter distributions as the PIL pipeline of ``transforms.py``: the v2
classes take the v1 arguments with the v1 meaning (crop area relative to the image, ratio
range, jitter factors drawn uniformly from ``[max(0, 1 - x), 1 + x]`` and ``[-hue, hue]``
in a random order of the four steps, grey with p = 0.1, flip with p = 0.5), and they draw
from torch's global generator, which the training loaders seed per example. Differences,
all within rounding: the crop is resized by torch's antialiased bilinear kernel instead of
Pillow's; the colour steps run on float32 pixels (``colour_ops``) and are rounded to uint8
once at the end, where Pillow rounds after each step.

A pipeline is ``Pipeline(steps, finish)``: ``steps`` end in a uint8 image, ``finish``
converts to float and normalises. ``pipeline(image)`` runs both; the loaders of
``lib/fast_data_loader.py`` run ``steps`` in their workers and ``finish`` on whole batches,
so 4x fewer bytes cross between processes (the same numbers: ``finish`` is elementwise).

Importing this module imports torchvision; ``transforms.py`` imports it only when a tensor
pipeline is built.
"""

from typing import Sequence

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from domainbed.datasets import colour_ops


def to_uint8_chw(image) -> torch.Tensor:
    """A PIL image or a uint8 ``(3, H, W)`` tensor as a uint8 ``(3, H, W)`` tensor.

    PIL images become a channels-last view of their ``(H, W, 3)`` pixels, the layout of
    the decode cache, so cached and uncached images take the same path.
    """
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.dim() != 3:
            raise TypeError(f"expected a uint8 (C, H, W) image tensor, got {image.dtype} "
                            f"of shape {tuple(image.shape)}")
        return image
    if image.mode != "RGB":
        image = image.convert("RGB")
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)


def _is_uint8_image(inpt) -> bool:
    return (type(inpt) is torch.Tensor and inpt.dtype == torch.uint8 and inpt.dim() == 3
            and inpt.shape[0] == 3)


class RandomResizedCrop(v2.RandomResizedCrop):
    """``v2.RandomResizedCrop`` (its parameter draws, its resize kernel); a uint8 crop is
    first copied into a contiguous channels-last block, on which torch's uint8 antialiased
    resize runs about 1.5x faster than on a strided view (same output)."""

    def transform(self, inpt, params):
        if not _is_uint8_image(inpt):
            return super().transform(inpt, params)
        top, left = params["top"], params["left"]
        crop = inpt[:, top:top + params["height"], left:left + params["width"]]
        block = crop.unsqueeze(0).contiguous(memory_format=torch.channels_last)
        return F.resize(block, list(self.size), interpolation=self.interpolation,
                        antialias=self.antialias)[0]


class ColorJitterToFloat(v2.ColorJitter):
    """``v2.ColorJitter`` (its parameter draws and order) with the ``colour_ops`` kernels:
    a uint8 RGB image comes out as float32 in ``[0, 255]`` (not rounded); other inputs go
    through torchvision's own kernels."""

    def transform(self, inpt, params):
        if not _is_uint8_image(inpt):
            return super().transform(inpt, params)
        image, bound = inpt.to(torch.float32), 255.0
        for fn_id in params["fn_idx"].tolist():
            if fn_id == 0 and params["brightness_factor"] is not None:
                colour_ops.adjust_brightness_(image, params["brightness_factor"], bound)
            elif fn_id == 1 and params["contrast_factor"] is not None:
                colour_ops.adjust_contrast_(image, params["contrast_factor"], bound)
            elif fn_id == 2 and params["saturation_factor"] is not None:
                colour_ops.adjust_saturation_(image, params["saturation_factor"], bound)
            elif fn_id == 3 and params["hue_factor"] is not None:
                image = colour_ops.adjust_hue(image, params["hue_factor"])
        return image


def round_to_uint8(image: torch.Tensor) -> torch.Tensor:
    """Float pixels in ``[0, 255]`` rounded (half up) to uint8; uint8 passes through."""
    if image.dtype == torch.uint8:
        return image
    return (image + 0.5).to(torch.uint8)


class Normalize:
    """uint8 images, one ``(C, H, W)`` or a batch ``(N, C, H, W)``, to float32
    ``(x / 255 - mean) / std``: ``v2.ToDtype(float32, scale=True)`` then ``v2.Normalize``
    in one multiply-add (equal up to float rounding)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean, self.std = tuple(mean), tuple(std)
        self.scale = torch.tensor([1.0 / (255.0 * s) for s in std]).view(-1, 1, 1)
        self.shift = torch.tensor([-m / s for m, s in zip(mean, std)]).view(-1, 1, 1)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if image.dtype != torch.uint8:
            raise TypeError(f"Normalize expects uint8 images, got {image.dtype}")
        shift, scale = self.shift.to(image.device), self.scale.to(image.device)
        # uint8 straight into the multiply-add: one float buffer, not two (a batch is 19 MB
        # at 224 px, and every fresh buffer costs page faults)
        return torch.addcmul(shift, image.contiguous(), scale)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std}, from uint8)"


class Pipeline:
    """``finish(steps(image))``; ``steps`` (a v2.Compose) end in uint8 images and
    ``finish`` works on one image or a batch, so loaders may apply it per batch."""

    def __init__(self, steps, finish: Normalize):
        self.steps = v2.Compose(list(steps))
        self.finish = finish

    def __call__(self, image) -> torch.Tensor:
        return self.finish(self.steps(image))

    def __repr__(self) -> str:
        return f"Pipeline({self.steps!r}, {self.finish!r})"


def _grey(channels: int) -> list:
    return [v2.Grayscale(num_output_channels=1)] if channels == 1 else []


def eval_transform(size: int, channels: int, mean, std) -> Pipeline:
    """Resize to ``size`` x ``size`` (antialiased bilinear), then normalise."""
    return Pipeline([to_uint8_chw, v2.Resize((size, size), antialias=True)]
                    + _grey(channels) + [round_to_uint8], Normalize(mean, std))


def train_transform(size: int, channels: int, mean, std, scale, ratio, jitter: float,
                    grey_p: float) -> Pipeline:
    """Random resized crop (uint8), flip, colour jitter (float), random grey, rounded to
    uint8, then normalised."""
    return Pipeline([
        to_uint8_chw,
        RandomResizedCrop(size, scale=scale, ratio=ratio, antialias=True),
        v2.RandomHorizontalFlip(),
        ColorJitterToFloat(jitter, jitter, jitter, jitter),
        v2.RandomGrayscale(p=grey_p),
    ] + _grey(channels) + [round_to_uint8], Normalize(mean, std))
