"""Building blocks shared by several algorithms: an update counter with upstream's
"reset Adam at step N", domain labels of a concatenated batch, and ARM's context network."""

from typing import Optional

import torch
import torch.nn as nn

from domainbed.algorithms.erm import ERM


def domain_labels(minibatches) -> torch.Tensor:
    """The index of each row's domain (int64), for the concatenation of ``minibatches``."""
    return torch.cat([torch.full((len(x),), e, dtype=torch.int64, device=x.device)
                      for e, (x, _) in enumerate(minibatches)])


def split_rows(tensor: torch.Tensor, minibatches):
    """``tensor`` (rows of the concatenated batch) cut back into one slice per domain."""
    return tensor.split([len(x) for x, _ in minibatches])


class CountedERM(ERM):
    """ERM with upstream's ``update_count`` buffer (int64, shape [1], in the state dict) and
    its "re-create Adam when the counter reaches a switch step" rule."""

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self.register_buffer("update_count", torch.tensor([0]))

    @property
    def count(self) -> int:
        return int(self.update_count.item())

    def reset_optimizer_at(self, *switch_steps, lr: Optional[float] = None) -> None:
        """Fresh Adam (lr ``lr`` or the base lr) when the counter equals one of
        ``switch_steps``; a non-integer step (EQRM's random burn-in) never matches."""
        if any(self.count == step for step in switch_steps):
            lr = self.hparams["lr"] if lr is None else lr
            self.optimizer = torch.optim.Adam(self.network.parameters(), lr=lr,
                                              weight_decay=self.hparams["weight_decay"])


class ContextNet(nn.Module):
    """ARM's context network: three 5x5 convolutions (C -> 64 -> 64 -> 1 channels) with
    batch norm and ReLU between them; the output keeps the input's height and width."""

    def __init__(self, input_shape):
        super().__init__()
        padding = 5 // 2
        self.context_net = nn.Sequential(
            nn.Conv2d(input_shape[0], 64, 5, padding=padding), nn.BatchNorm2d(64), nn.ReLU(),
            nn.Conv2d(64, 64, 5, padding=padding), nn.BatchNorm2d(64), nn.ReLU(),
            nn.Conv2d(64, 1, 5, padding=padding))

    def forward(self, x):
        return self.context_net(x)
