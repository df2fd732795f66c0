"""torchvision ResNet-18/50 backbones (ImageNet V1 weights, as the paper and DomainBed)."""

import torch.nn as nn

from domainbed.networks.backbones import BACKBONES, feature_dropout
from domainbed.networks.batch_norm import FreezableBatchNorm
from domainbed.networks.pretrained import load_pretrained_resnet


def adapt_first_conv(conv: nn.Conv2d, n_channels: int) -> nn.Conv2d:
    """A copy of ``conv`` for ``n_channels`` inputs; channel i reuses filter channel i mod 3."""
    old = conv.weight.data
    new = nn.Conv2d(n_channels, conv.out_channels, kernel_size=conv.kernel_size,
                    stride=conv.stride, padding=conv.padding, bias=conv.bias is not None)
    for i in range(n_channels):
        new.weight.data[:, i] = old[:, i % old.shape[1]]
    if conv.bias is not None:
        new.bias.data.copy_(conv.bias.data)
    return new


class ResNet(FreezableBatchNorm):
    """A torchvision ResNet without its fc layer, with feature dropout ``resnet_dropout``.

    Batch norm is frozen (eval mode at build and after every ``train()``) when
    ``hparams['freeze_bn']``, as upstream; otherwise its statistics update in training.
    """

    def __init__(self, input_shape, hparams, depth: int = 50):
        super().__init__()
        import torchvision
        builder = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}[depth]
        self.network = builder(weights=None)
        if hparams.get("pretrained", True):
            load_pretrained_resnet(self.network, depth, hparams.get("pretrained_path"))
        self.n_outputs = self.network.fc.in_features
        if input_shape[0] != 3:
            self.network.conv1 = adapt_first_conv(self.network.conv1, input_shape[0])
        self.network.fc = nn.Identity()
        self.dropout = nn.Dropout(feature_dropout(hparams, self.n_outputs))
        self._set_freeze_bn(hparams.get("freeze_bn", False))

    def forward(self, x):
        return self.dropout(self.network(x))


@BACKBONES.register("resnet18")
def _resnet18(input_shape, hparams):
    return ResNet(input_shape, hparams, depth=18)


@BACKBONES.register("resnet50")
def _resnet50(input_shape, hparams):
    return ResNet(input_shape, hparams, depth=50)
