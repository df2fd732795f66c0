"""The base class of the embedded datasets: cached arrays -> per-domain tensor datasets."""

from typing import ClassVar, List, Optional

import numpy as np
import torch
from torch.utils.data import TensorDataset

from domainbed.datasets.base import MultipleDomainDataset
from domainbed.datasets.input_spec import InputSpec
from domainbed.datasets.embedded import cache
from domainbed.datasets.embedded.specs import SPECS, get_spec

# pixels p in [0, 255] become (p / 255 - PIXEL_MEAN) / PIXEL_STD, i.e. about [-2, 2]
PIXEL_MEAN = 0.5
PIXEL_STD = 0.25


def to_tensor(x: np.ndarray) -> torch.Tensor:
    """uint8 images (N, 3, 32, 32) -> normalised float32 tensor."""
    return (torch.from_numpy(x.astype(np.float32)) / 255.0 - PIXEL_MEAN) / PIXEL_STD


class EmbeddedDataset(MultipleDomainDataset):
    """A generated multi-domain dataset; a subclass named like a spec in specs.SPECS is one.

    Environments are the domain styles; ``datasets[i]`` is a ``TensorDataset(x, y)`` whose
    labels are ``datasets[i].tensors[1]``.
    """

    N_STEPS = 301
    CHECKPOINT_FREQ = 50
    N_WORKERS = 0
    INPUT_SHAPE = (3, 32, 32)
    # a CPU-sized backbone so the whole recipe runs on a laptop (hparams "backbone")
    DEFAULT_BACKBONE = "tiny_cnn"
    SPEC_NAME: ClassVar[Optional[str]] = None
    CLASSES: ClassVar[List[str]] = []

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__name__ in SPECS:
            cls.SPEC_NAME = cls.__name__
        if cls.SPEC_NAME is not None:
            cls.CLASSES = list(get_spec(cls.SPEC_NAME).classes)

    def __init__(self, root, test_envs, hparams):
        super().__init__()
        if self.SPEC_NAME is None:
            raise TypeError(f"{type(self).__name__} names no embedded dataset spec")
        arrays = cache.load_or_generate(self.SPEC_NAME, root)
        x, y = to_tensor(arrays["x"]), torch.from_numpy(arrays["y"].astype(np.int64))
        env = torch.from_numpy(arrays["env"].copy())
        self.input_shape = self.INPUT_SHAPE
        self.num_classes = len(self.CLASSES)
        # an image file read as these tensors are made (``to_tensor``)
        self.input_spec = InputSpec(self.INPUT_SHAPE[1], 3, (PIXEL_MEAN,) * 3,
                                    (PIXEL_STD,) * 3, source="embedded benchmark pixels")
        self.datasets = [TensorDataset(x[env == i], y[env == i])
                         for i in range(len(self.ENVIRONMENTS))]
