"""The input pipeline a model expects: image size, channels, normalisation, interpolation.

One ``InputSpec`` is resolved per run from its hparams and used by training (the image
folders' transforms), evaluation, the saved model folder (``config.json``) and ``predict``,
so an image is prepared the same way everywhere:

- a ``timm:<model>`` backbone: the mean, std and interpolation of the model's pretrained
  configuration as timm resolves it (``timm.data.resolve_data_config``), and its input size
  unless hparams ``image_size`` is given (e.g. ``(x - 0.5) / 0.5`` and bicubic for many ViTs);
- every other backbone (torchvision ResNets, the small CNNs, upstream's ``resnet50_augmix``
  and ``dinov2``): ImageNet's mean and std, bilinear, hparams ``image_size`` (default 224);
- one channel (``image_channels: 1``): the mean of the three channels' statistics.

Datasets that are tensors already (the embedded benchmark, MNIST) declare their own spec,
the one that turns an image file into the tensors they hold (or none when no file can).
"""

from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

from domainbed.datasets import transforms as T
from domainbed.errors import DomainBedError

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
TIMM_PREFIX = "timm:"  # as domainbed.networks.backbones.TIMM_PREFIX (kept torch-free here)


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes the tensor a model reads: resized to ``image_size`` square
    (whole image, antialiased ``interpolation``), greyscale when ``channels`` is 1, then
    ``(x / 255 - mean) / std`` per channel. ``source`` says where the statistics come
    from."""

    image_size: int
    channels: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    interpolation: str = "bilinear"
    source: str = "imagenet"

    def __post_init__(self):
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise DomainBedError(f"input spec: mean {self.mean} and std {self.std} need one "
                                 f"value per channel ({self.channels})")
        if self.interpolation not in INTERPOLATIONS:
            raise DomainBedError(f"input spec: unknown interpolation {self.interpolation!r}; "
                                 f"known: {', '.join(INTERPOLATIONS)}")

    def to_json(self) -> Dict[str, Any]:
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "InputSpec":
        try:
            return cls(int(data["image_size"]), int(data["channels"]),
                       tuple(float(v) for v in data["mean"]),
                       tuple(float(v) for v in data["std"]),
                       str(data.get("interpolation", "bilinear")),
                       str(data.get("source", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise DomainBedError(f"input spec {data!r} is incomplete ({exc}); it needs "
                                 "image_size, channels, mean and std") from None

    def eval_transform(self):
        """Image (PIL, or uint8 (3, H, W) tensor) -> normalised float tensor; a two-stage
        ``Pipeline`` (uint8 steps, then batched normalisation)."""
        from domainbed.datasets import tensor_transforms
        return tensor_transforms.eval_transform(self.image_size, self.channels, self.mean,
                                                self.std, self.interpolation)

    def train_transform(self):
        """The training augmentation (see ``transforms``) ending in this normalisation."""
        from domainbed.datasets import tensor_transforms
        return tensor_transforms.train_transform(
            self.image_size, self.channels, self.mean, self.std, scale=T.CROP_SCALE,
            ratio=T.CROP_RATIO, jitter=T.JITTER, grey_p=T.GREY_P,
            interpolation=self.interpolation)


def _grey(values: Sequence[float]) -> Tuple[float, ...]:
    return (sum(values) / len(values),)


def timm_model_name(hparams) -> Optional[str]:
    """The timm model of hparams ``backbone: "timm:<name>"``, else None."""
    backbone = (hparams or {}).get("backbone") or ""
    if isinstance(backbone, str) and backbone.startswith(TIMM_PREFIX):
        return backbone[len(TIMM_PREFIX):]
    return None


def image_input_spec(hparams) -> InputSpec:
    """The spec of an image dataset read by the backbone that ``hparams`` select (see the
    module docstring); bad ``image_size`` / ``image_channels`` raise ``DataError``."""
    hparams = dict(hparams or {})
    name = timm_model_name(hparams)
    mean, std, interpolation, source = T.IMAGENET_MEAN, T.IMAGENET_STD, "bilinear", "imagenet"
    if name:
        from domainbed.networks.timm_backbones import timm_data_config
        config = timm_data_config(name)
        mean, std = tuple(config["mean"]), tuple(config["std"])
        interpolation = config.get("interpolation") or "bilinear"
        if interpolation not in INTERPOLATIONS:
            interpolation = "bicubic" if interpolation == "random" else "bilinear"
        source = f"timm pretrained config of {name}"
        if "image_size" not in hparams:
            height, width = config["input_size"][1:]
            hparams["image_size"] = int(height) if height == width else T.IMAGE_SIZE
    size, channels = T.image_geometry(hparams)
    if channels == 1:
        mean, std = _grey(mean), _grey(std)
    return InputSpec(size, channels, tuple(float(v) for v in mean),
                     tuple(float(v) for v in std), interpolation, source)


def class_names(dataset) -> list:
    """The class names of ``dataset`` in label order (``classes`` or ``CLASSES``), else
    the label indices as text."""
    names = getattr(dataset, "classes", None) or getattr(dataset, "CLASSES", None)
    if names and len(names) == dataset.num_classes:
        return [str(n) for n in names]
    return [str(i) for i in range(dataset.num_classes)]


def dataset_facts(dataset) -> Dict[str, Any]:
    """What a saved model keeps of its dataset: class names, environment names and the
    input pipeline (None for data that no image file can be turned into)."""
    spec = getattr(dataset, "input_spec", None)
    return {"model_class_names": class_names(dataset),
            "model_environments": [str(e) for e in (getattr(dataset, "ENVIRONMENTS", None)
                                                    or [])],
            "model_input": spec.to_json() if spec is not None else None}
