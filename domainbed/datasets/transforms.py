"""Image transforms: the eval transform and the train augmentation, at any size.

The size and channels are hyperparameters of the image datasets: ``image_size`` (default
224; e.g. 32, 64, 96 or 128 for small data or CPU work) and ``image_channels`` (3, default:
greyscale images are read as RGB; 1: images are converted to greyscale). torchvision is
imported inside the functions: importing it costs seconds, and modules that only register
datasets should not pay for it.

Two implementations of the same transforms: ``train_transform`` / ``eval_transform`` work on
PIL images (torchvision.transforms v1, upstream's), ``tensor_train_transform`` /
``tensor_eval_transform`` on uint8 tensors or PIL images (torchvision.transforms.v2, see
``tensor_transforms.py``; the image folders use them, about 3x cheaper per image).
"""

from typing import Tuple

from domainbed.errors import DataError
from domainbed.hparams_registry import register_known_hparams

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SIZE = 224
IMAGE_CHANNELS = 3
# one channel: the mean of the ImageNet statistics
GREY_MEAN = (sum(IMAGENET_MEAN) / 3,)
GREY_STD = (sum(IMAGENET_STD) / 3,)
# the training augmentation's parameters (upstream's)
CROP_SCALE = (0.7, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
JITTER = 0.3
GREY_P = 0.1

register_known_hparams(["image_size", "image_channels"],
                       "domainbed.datasets (input size and channels of image datasets)")


def image_geometry(hparams) -> Tuple[int, int]:
    """``(image_size, image_channels)`` from ``hparams``; bad values raise DataError."""
    hparams = hparams or {}
    size = hparams.get("image_size", IMAGE_SIZE)
    channels = hparams.get("image_channels", IMAGE_CHANNELS)
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise DataError(f"hparams 'image_size' must be an integer >= 8 (e.g. 32, 64, 224), "
                        f"got {size!r}")
    if channels not in (1, 3):
        raise DataError(f"hparams 'image_channels' must be 1 (greyscale) or 3 (RGB), "
                        f"got {channels!r}")
    return size, channels


def tensor_steps(channels: int = IMAGE_CHANNELS) -> list:
    """The last steps of every transform: greyscale if asked, to tensor, normalisation."""
    from torchvision import transforms
    steps = [transforms.Grayscale(num_output_channels=1)] if channels == 1 else []
    mean, std = (GREY_MEAN, GREY_STD) if channels == 1 else (IMAGENET_MEAN, IMAGENET_STD)
    return steps + [transforms.ToTensor(), transforms.Normalize(mean, std)]


def eval_transform(size: int = IMAGE_SIZE, channels: int = IMAGE_CHANNELS):
    """Resize to ``size`` x ``size``, to tensor, ImageNet normalisation; deterministic."""
    from torchvision import transforms
    return transforms.Compose([transforms.Resize((size, size))] + tensor_steps(channels))


def train_transform(size: int = IMAGE_SIZE, channels: int = IMAGE_CHANNELS,
                    resize_first: bool = False):
    """The training augmentation: random resized crop, flip, colour jitter, grayscale
    (``resize_first``: resize to ``size`` before the crop, as upstream's WILDS datasets)."""
    from torchvision import transforms
    first = [transforms.Resize((size, size))] if resize_first else []
    return transforms.Compose(first + [
        transforms.RandomResizedCrop(size, scale=CROP_SCALE, ratio=CROP_RATIO),
        transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(JITTER, JITTER, JITTER, JITTER),
        transforms.RandomGrayscale(p=GREY_P),
    ] + tensor_steps(channels))


def image_transform(augment: bool, size: int = IMAGE_SIZE, channels: int = IMAGE_CHANNELS):
    """``train_transform`` when ``augment`` else ``eval_transform``."""
    return train_transform(size, channels) if augment else eval_transform(size, channels)


def _statistics(channels: int):
    return (GREY_MEAN, GREY_STD) if channels == 1 else (IMAGENET_MEAN, IMAGENET_STD)


def tensor_eval_transform(size: int = IMAGE_SIZE, channels: int = IMAGE_CHANNELS):
    """``eval_transform`` on uint8 ``(3, H, W)`` tensors or PIL images (torchvision v2)."""
    from domainbed.datasets import tensor_transforms
    return tensor_transforms.eval_transform(size, channels, *_statistics(channels))


def tensor_train_transform(size: int = IMAGE_SIZE, channels: int = IMAGE_CHANNELS):
    """``train_transform`` on uint8 ``(3, H, W)`` tensors or PIL images (torchvision v2):
    the same steps with the same parameter distributions (see ``tensor_transforms``)."""
    from domainbed.datasets import tensor_transforms
    return tensor_transforms.train_transform(size, channels, *_statistics(channels),
                                             scale=CROP_SCALE, ratio=CROP_RATIO,
                                             jitter=JITTER, grey_p=GREY_P)
