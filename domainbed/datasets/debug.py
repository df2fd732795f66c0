"""Debug datasets: random tensors, for tests and smoke runs."""

import torch
from torch.utils.data import TensorDataset

from domainbed.datasets.base import MultipleDomainDataset, register_dataset


class _DebugDataset(MultipleDomainDataset):
    N_STEPS = 5001
    CHECKPOINT_FREQ = 100
    N_WORKERS = 0
    N_EXAMPLES = 16

    def __init__(self, root, test_envs, hparams):
        super().__init__()
        self.input_shape = self.INPUT_SHAPE
        self.num_classes = 2
        # fixed generator: the data do not depend on the global seed or the process
        generator = torch.Generator().manual_seed(0)
        self.datasets = []
        for _ in self.ENVIRONMENTS:
            x = torch.randn(self.N_EXAMPLES, *self.INPUT_SHAPE, generator=generator)
            y = torch.randint(0, self.num_classes, (self.N_EXAMPLES,), generator=generator)
            self.datasets.append(TensorDataset(x, y))


@register_dataset(environments=("0", "1", "2"))
class Debug28(_DebugDataset):
    INPUT_SHAPE = (3, 28, 28)


@register_dataset(environments=("0", "1", "2"))
class Debug224(_DebugDataset):
    INPUT_SHAPE = (3, 224, 224)
