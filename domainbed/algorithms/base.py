"""The algorithm contract and registry.

An algorithm is a ``torch.nn.Module`` built as ``Algorithm(input_shape, num_classes,
num_domains, hparams)``; ``update(minibatches, unlabeled=None)`` takes one optimisation step
on a list of per-domain ``(x, y)`` batches and returns a dict of floats; ``predict(x)``
returns logits. Hyperparameters are declared next to the algorithm that uses them with a
``declare_hparams(dataset, hp, small_images)`` classmethod (see ``hparams_registry``).
"""

from typing import Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn as nn

from domainbed.algorithms.registry import (ALGORITHM_REGISTRY,  # noqa: F401  (re-exported)
                                           register_algorithm)
from domainbed.lib.upstream_misc import random_pairs_of_minibatches  # noqa: F401  (re-exported)

Minibatches = List[Tuple[torch.Tensor, torch.Tensor]]


def make_optimizer(params: Iterable[torch.nn.Parameter], hparams,
                   **options) -> torch.optim.Optimizer:
    """Adam with L2 weight decay and no schedule, as upstream and the paper (``options``:
    torch's implementation switches, e.g. ``fused=True``)."""
    return torch.optim.Adam(params, lr=hparams["lr"], weight_decay=hparams["weight_decay"],
                            **options)


class Algorithm(nn.Module):
    """Base class: subclasses implement ``update`` and ``predict``.

    The training loop (``domainbed.training``) calls these hooks on every algorithm, in
    this order; each has a default here that does nothing, so an algorithm overrides only
    the ones it needs:

    - :meth:`after_init` once at the start of a fresh run (not on resume);
    - :meth:`stop_training` before every step;
    - :meth:`on_evaluation` at every evaluation, its dict added to the record;
    - :meth:`final_evaluation` once after the last step.

    Checkpoints use :meth:`extra_state`, :meth:`load_extra_state` and :meth:`optimizers`.
    """

    #: whether the training loop keeps ``model_best.safetensors`` (the weights at the best
    #: ID-validation evaluation); False where the model is an average over the trajectory
    #: (MA, SWAD), whose final weights are the model
    BEST_CHECKPOINT = True

    def __init__(self, input_shape, num_classes: int, num_domains: int, hparams):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.num_domains = num_domains
        self.hparams = hparams

    @classmethod
    def declare_hparams(cls, dataset: str, hp, small_images: bool) -> None:
        """Declare this class's own hyperparameters with ``hp(name, default, random_fn)``."""

    def update(self, minibatches: Minibatches, unlabeled=None) -> Dict[str, float]:
        raise NotImplementedError

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def after_init(self, init: Optional[dict]) -> None:
        """Called once at the start of a fresh run (not on resume), after ``--init_from``.

        ``init`` is what the run records about its initialisation (None without a file).
        """

    def stop_training(self) -> bool:
        """Asked before every step: True ends training before it (e.g. SWAD once its loss
        valley is over). The default, False, trains to the last step."""
        return False

    def on_evaluation(self, record: dict, val_loaders) -> Optional[dict]:
        """Called at every evaluation with its record so far (``step``, step values and
        the scored splits) and ``val_loaders``, the training environments' ``out`` splits
        as ``(name, loader)`` pairs, built on first use. A dict it returns is added to the
        record (e.g. SWAD's validation loss and window); the default, None, adds nothing."""
        return None

    def final_evaluation(self) -> Optional[dict]:
        """Called once after the last update. Return None (the default) when the records
        written during training already score the final model; return a dict to have the
        loop write one more record, flagged ``"final_average": true``, that scores what
        ``predict`` gives from now on (e.g. SWAD's averaged window) and holds the dict's
        items. Model selection then uses only that record of the run."""
        return None

    def extra_state(self) -> dict:
        """Non-tensor state that a resumable checkpoint must keep (tensors go in buffers)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        """Every optimiser the algorithm owns, by attribute name (for checkpoints)."""
        return {name: value for name, value in vars(self).items()
                if isinstance(value, torch.optim.Optimizer)}


def device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def concat_minibatches(minibatches: Minibatches) -> Tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([x for x, _ in minibatches]), torch.cat([y for _, y in minibatches])


def optional_unlabeled(unlabeled: Optional[list]) -> Optional[torch.Tensor]:
    return None if not unlabeled else torch.cat(list(unlabeled))
