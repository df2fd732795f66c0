"""Frozen batch norm, upstream's ``freeze_bn`` switch: running statistics stay fixed.

With ``hparams['freeze_bn']`` every BatchNorm layer is in eval mode at construction and
after every ``train()`` call; its affine parameters still train (the paper froze them so).
Without it, batch norm updates its statistics in training mode as usual.
"""

import torch.nn as nn


def freeze_batch_norm(module: nn.Module) -> None:
    """Put every batch-norm layer inside ``module`` in eval mode."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


class FreezableBatchNorm(nn.Module):
    """A module whose batch norm is frozen when ``freeze_bn`` (set by ``_set_freeze_bn``)."""

    freeze_bn: bool = False

    def _set_freeze_bn(self, freeze: bool) -> None:
        self.freeze_bn = bool(freeze)
        if self.freeze_bn:
            freeze_batch_norm(self)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_bn:
            freeze_batch_norm(self)
        return self
