"""The multi-domain dataset contract and the dataset registry."""

from typing import List, Optional, Sequence

from domainbed.datasets.registry import (DATASET_REGISTRY,  # noqa: F401  (re-exported)
                                         register_dataset)


class MultipleDomainDataset:
    """A list of per-environment torch datasets plus the facts a training run needs.

    Subclasses declare their environments where they register (``@register_dataset(
    environments=(...))``, which sets ``ENVIRONMENTS``), set ``INPUT_SHAPE``, and in
    ``__init__`` fill
    ``self.datasets`` (one torch dataset per environment, same order as ENVIRONMENTS),
    ``self.input_shape`` and ``self.num_classes``.
    """

    N_STEPS = 5001
    CHECKPOINT_FREQ = 100
    N_WORKERS = 8
    ENVIRONMENTS: Optional[List[str]] = None
    INPUT_SHAPE: Optional[Sequence[int]] = None

    datasets: list
    input_shape: Sequence[int]
    num_classes: int
    # how an image file becomes one of this dataset's inputs (``input_spec.InputSpec``);
    # None: no image file can (random tensors, two-channel MNIST)
    input_spec = None

    def __getitem__(self, index):
        return self.datasets[index]

    def __len__(self):
        return len(self.datasets)

    def __iter__(self):
        return iter(self.datasets)

    def eval_view(self, index):
        """Environment ``index`` as scored at evaluation: never augmented."""
        return self.datasets[index]

    @classmethod
    def environments(cls, root: Optional[str] = None) -> List[str]:
        """Environment names; datasets whose domains come from disk read them from ``root``."""
        if cls.ENVIRONMENTS is None:
            raise ValueError(f"{cls.__name__} does not declare its environments")
        return list(cls.ENVIRONMENTS)
