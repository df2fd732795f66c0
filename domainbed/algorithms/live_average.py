"""The shared base of MA and SWAD: weight averaging along one training trajectory.

Both train exactly like ERM on a *live* network and keep an *averaged* copy. The averaged
network sits under the standard names (``featurizer.*``, ``classifier.*``, ``network.0/1.*``),
the live one under ``network_live.0/1.*``. So ``model.safetensors`` (= ``state_dict()``)
gives every downstream reader of ``featurizer.*`` / ``classifier.*`` (auxiliary pool, soups,
``--init_from``) the AVERAGED weights, while checkpoints still hold both for an exact resume.
``--init_from`` loads into the standard names; ``after_init`` copies them to the live network.

Floating-point buffers are averaged like parameters (frozen batch norm keeps them constant);
integer buffers are copied from the live network.
"""

import copy
from typing import List, Optional, Tuple

import torch
import torch.nn as nn

from domainbed.algorithms.base import make_optimizer
from domainbed.algorithms.erm import ERM


def paired_state(averaged: nn.Module, live: nn.Module) -> List[Tuple[str, torch.Tensor,
                                                                    torch.Tensor]]:
    avg_state, live_state = averaged.state_dict(), live.state_dict()
    return [(k, avg_state[k], live_state[k]) for k in avg_state]


def sum_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A copy to sum into: at least float32, so half-precision weights sum safely."""
    return tensor.detach().to(torch.promote_types(tensor.dtype, torch.float32)).clone()


class LiveAndAveraged(ERM):
    """ERM on ``network_live``; ``featurizer``/``classifier``/``network`` hold an average."""

    BEST_CHECKPOINT = False  # the averaged weights are the run's model

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        # ERM built the live modules (and its optimiser over them): keep them under a new name
        self.network_live = self.network
        self.featurizer = copy.deepcopy(self.network_live[0])
        self.classifier = copy.deepcopy(self.network_live[1])
        self.network = nn.Sequential(self.featurizer, self.classifier)
        for p in self.network.parameters():
            p.requires_grad_(False)

    def reset_optimizer(self, parameters=None) -> None:
        params = self.network_live.parameters() if parameters is None else parameters
        self.optimizer = make_optimizer(params, self.hparams)

    def after_init(self, init: Optional[dict]) -> None:
        super().after_init(init)
        # --init_from wrote into the standard names (the average): start training from it
        self.network_live.load_state_dict(self.network.state_dict())

    @torch.no_grad()
    def _copy_live_to_average(self) -> None:
        for _, avg, live in paired_state(self.network, self.network_live):
            avg.copy_(live)

    def _predict_with_average(self) -> bool:
        raise NotImplementedError

    def predict(self, x):
        if self.training or not self._predict_with_average():
            return self.network_live(x)
        return self.network(x)

    def update(self, minibatches, unlabeled=None):
        values = super().update(minibatches, unlabeled)
        self.after_step()
        return values

    def after_step(self) -> None:
        raise NotImplementedError
