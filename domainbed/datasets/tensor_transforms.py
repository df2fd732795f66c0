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
converts to float and normalises. The training steps are ``TrainSteps``: the v2 transforms
draw their parameters (the same draws, in the same order, as their ``v2.Compose``), the
kernels run without v2's per-call dispatch, the colour steps on contiguous float planes (on
the channels-last crop they cost 1.5x to 3x more), and a cached image is cropped straight
from the store's memory map (no copy of the whole image). ``pipeline(image)`` runs both;
the loaders of ``lib/fast_data_loader.py`` run ``steps`` in their workers and ``finish`` on
whole batches, so 4x fewer bytes cross between processes (the same numbers: ``finish`` is
elementwise).

Importing this module imports torchvision; ``transforms.py`` imports it only when a tensor
pipeline is built.
"""

from typing import Optional, Sequence

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from domainbed.datasets import colour_ops


def to_uint8_chw(image) -> torch.Tensor:
    """A PIL image, a uint8 ``(3, H, W)`` tensor or a uint8 ``(H, W, 3)`` array (e.g. a view
    of the decode cache) as a uint8 ``(3, H, W)`` tensor.

    PIL images and arrays become a channels-last view of their ``(H, W, 3)`` pixels, the
    layout of the decode cache, so cached and uncached images take the same path.
    """
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.dim() != 3:
            raise TypeError(f"expected a uint8 (C, H, W) image tensor, got {image.dtype} "
                            f"of shape {tuple(image.shape)}")
        return image
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise TypeError(f"expected a uint8 (H, W, 3) image array, got {image.dtype} "
                            f"of shape {image.shape}")
        return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)


def crop_block(image, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """The crop of a uint8 ``(3, H, W)`` tensor or ``(H, W, 3)`` array (read-only views
    welcome: only the crop is read) as a new contiguous channels-last ``(1, 3, h, w)``
    tensor, the layout on which torch's uint8 antialiased resize is fastest."""
    if isinstance(image, np.ndarray):
        # always a copy (a full-width crop of a view is contiguous already, and read-only)
        pixels = np.array(image[top:top + height, left:left + width], order="C", copy=True)
        return torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)
    crop = image[:, top:top + height, left:left + width]
    return crop.unsqueeze(0).contiguous(memory_format=torch.channels_last)


def resize_block(block: torch.Tensor, size, interpolation, antialias: bool) -> torch.Tensor:
    """``F.resize`` of a uint8 ``(1, 3, h, w)`` block to ``size``. Antialiased bilinear
    (the training crop's) calls torch's kernel directly: the same pixels, without v2's
    dispatch (on a 224 px crop it cost a quarter of the kernel's time), contiguous."""
    if antialias and v2.InterpolationMode(interpolation) == v2.InterpolationMode.BILINEAR:
        return torch.nn.functional.interpolate(block, size=list(size), mode="bilinear",
                                               align_corners=False, antialias=True)
    return F.resize(block, list(size), interpolation=interpolation, antialias=antialias)


def _size_proxy(height: int, width: int) -> torch.Tensor:
    """A uint8 ``(3, height, width)`` tensor without memory: what v2's ``make_params``
    reads of an image (its size) for an image that is not a tensor."""
    return torch.zeros(1, dtype=torch.uint8).expand(3, height, width)


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
        block = crop_block(inpt, params["top"], params["left"], params["height"],
                           params["width"])
        return F.resize(block, list(self.size), interpolation=self.interpolation,
                        antialias=self.antialias)[0]


def jitter_to_float(image: torch.Tensor, params: dict) -> torch.Tensor:
    """The colour steps of ``v2.ColorJitter.make_params``' ``params`` on a uint8 RGB image,
    in their drawn order, with the ``colour_ops`` kernels: float32 in ``[0, 255]``, not
    rounded, in contiguous (C, H, W) layout whatever the input's."""
    image, bound = image.to(torch.float32, memory_format=torch.contiguous_format), 255.0
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


class ColorJitterToFloat(v2.ColorJitter):
    """``v2.ColorJitter`` (its parameter draws and order) with the ``colour_ops`` kernels:
    a uint8 RGB image comes out as float32 in ``[0, 255]`` (not rounded); other inputs go
    through torchvision's own kernels."""

    def transform(self, inpt, params):
        if not _is_uint8_image(inpt):
            return super().transform(inpt, params)
        return jitter_to_float(inpt, params)


def round_to_uint8(image: torch.Tensor) -> torch.Tensor:
    """Float pixels in ``[0, 255]`` rounded (half up) to uint8; uint8 passes through."""
    if image.dtype == torch.uint8:
        return image
    return (image + 0.5).to(torch.uint8)


class Normalize:
    """uint8 images, one ``(C, H, W)`` or a batch ``(N, C, H, W)``, to float32
    ``(x / 255 - mean) / std``: ``v2.ToDtype(float32, scale=True)`` then ``v2.Normalize``
    in one multiply-add (equal up to float rounding)."""

    takes_out = True  # loaders may pass reused output buffers (lib/fast_data_loader.py)

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean, self.std = tuple(mean), tuple(std)
        self.scale = torch.tensor([1.0 / (255.0 * s) for s in std]).view(-1, 1, 1)
        self.shift = torch.tensor([-m / s for m, s in zip(mean, std)]).view(-1, 1, 1)

    def __call__(self, image: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The normalised ``image``, written into ``out`` (a float32 tensor of its shape)
        when given: a reused buffer costs no page faults (a batch is 19 MB at 224 px)."""
        if image.dtype != torch.uint8:
            raise TypeError(f"Normalize expects uint8 images, got {image.dtype}")
        if out is None:
            out = torch.empty(image.shape, dtype=torch.float32, device=image.device)
        if image.device.type == "cpu":
            # numpy, single-threaded: the loaders' main process runs this while their
            # workers keep every core busy, where torch's thread pool spent about twice
            # the CPU time of one thread (waiting for its other threads); multiply, then
            # add: on the GPU below one fused multiply-add (may differ in the last bit)
            result = out.numpy()
            np.multiply(image.numpy(), self.scale.numpy(), out=result)
            np.add(result, self.shift.numpy(), out=result)
            return out
        shift, scale = self.shift.to(image.device), self.scale.to(image.device)
        # convert, then an all-float multiply-add in place: 2x faster than addcmul on the
        # uint8 tensor (a mixed-dtype loop is not vectorised), the same numbers
        return torch.addcmul(shift, out.copy_(image), scale, out=out)

    @staticmethod
    def output_shape(image: torch.Tensor) -> torch.Size:
        return image.shape

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std}, from uint8)"


class Pipeline:
    """``finish(steps(image))``; ``steps`` (a callable, or a list made a v2.Compose) end in
    uint8 images and ``finish`` works on one image or a batch, so loaders may apply it per
    batch."""

    def __init__(self, steps, finish: Normalize):
        self.steps = steps if callable(steps) else v2.Compose(list(steps))
        self.finish = finish

    def __call__(self, image) -> torch.Tensor:
        return self.finish(self.steps(image))

    def __repr__(self) -> str:
        return f"Pipeline({self.steps!r}, {self.finish!r})"


class TrainSteps:
    """The training augmentation of one image to uint8: random resized crop, horizontal
    flip, colour jitter (float), random grey, rounded. The same parameter draws in the same
    order as ``v2.Compose(self.v2_steps())`` and the same kernels, hence the same images
    (up to float rounding in the contrast step's mean: at most one grey level, rarely);
    without v2's per-call dispatch, the colour steps on contiguous planes, and (H, W, 3)
    arrays cropped in place. Input: a PIL image, a uint8 (3, H, W) tensor or (H, W, 3)
    array."""

    takes_arrays = True  # ImageEnvironment may pass read-only views of the decode cache

    def __init__(self, size: int, channels: int, scale, ratio, jitter: float, grey_p: float,
                 flip_p: float = 0.5, interpolation: str = "bilinear"):
        self.crop = RandomResizedCrop(size, scale=scale, ratio=ratio, antialias=True,
                                      interpolation=v2.InterpolationMode(interpolation))
        self.jitter = ColorJitterToFloat(jitter, jitter, jitter, jitter)
        self.flip_p, self.grey_p, self.channels = flip_p, grey_p, channels

    def v2_steps(self) -> list:
        """The v2 transforms this equals, as a list for ``v2.Compose``."""
        return [to_uint8_chw, self.crop, v2.RandomHorizontalFlip(self.flip_p), self.jitter,
                v2.RandomGrayscale(p=self.grey_p)] + _grey(self.channels) + [round_to_uint8]

    def __call__(self, image) -> torch.Tensor:
        if not isinstance(image, np.ndarray):
            image = to_uint8_chw(image)
        height, width = image.shape[:2] if isinstance(image, np.ndarray) else image.shape[1:]
        box = self.crop.make_params([_size_proxy(height, width)])
        block = crop_block(image, box["top"], box["left"], box["height"], box["width"])
        x = resize_block(block, self.crop.size, self.crop.interpolation,
                         self.crop.antialias)[0]
        # v2's random transforms skip when torch.rand(1) >= p
        if torch.rand(1) < self.flip_p:
            x = x.flip(-1)
        x = jitter_to_float(x, self.jitter.make_params([x]))
        if torch.rand(1) < self.grey_p:
            x = F.rgb_to_grayscale(x, num_output_channels=3)
        if self.channels == 1:
            x = F.rgb_to_grayscale(x, num_output_channels=1)
        if x.is_contiguous():  # this step's own buffer: round in place (the same numbers)
            return x.add_(0.5).to(torch.uint8)
        return round_to_uint8(x)

    def __repr__(self) -> str:
        return f"TrainSteps({v2.Compose(self.v2_steps())!r})"


def _grey(channels: int) -> list:
    return [v2.Grayscale(num_output_channels=1)] if channels == 1 else []


def eval_transform(size: int, channels: int, mean, std,
                   interpolation: str = "bilinear") -> Pipeline:
    """Resize to ``size`` x ``size`` (antialiased, bilinear unless ``interpolation`` says
    otherwise, e.g. ``"bicubic"``), then normalise."""
    resize = v2.Resize((size, size), interpolation=v2.InterpolationMode(interpolation),
                       antialias=True)
    return Pipeline([to_uint8_chw, resize] + _grey(channels) + [round_to_uint8],
                    Normalize(mean, std))


def train_transform(size: int, channels: int, mean, std, scale, ratio, jitter: float,
                    grey_p: float, interpolation: str = "bilinear") -> Pipeline:
    """Random resized crop (uint8), flip, colour jitter (float), random grey, rounded to
    uint8 (``TrainSteps``), then normalised."""
    return Pipeline(TrainSteps(size, channels, scale, ratio, jitter, grey_p,
                               interpolation=interpolation), Normalize(mean, std))
