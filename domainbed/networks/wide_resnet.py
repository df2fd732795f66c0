"""Wide ResNet (Zagoruyko & Komodakis), upstream's backbone for 32x32 inputs: WRN-16-2.

Pre-activation basic blocks; torch's default initialisation (upstream defines an init helper
but never applies it). The last pooling is global average pooling, which equals upstream's
8x8 average pool on 32x32 inputs and keeps other sizes working.
"""

import torch.nn as nn

from domainbed.networks.backbones import BACKBONES, BackboneError
from domainbed.networks.batch_norm import FreezableBatchNorm


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=True)


class WideBasicBlock(nn.Module):
    """BN, ReLU, conv3x3, dropout, BN, ReLU, conv3x3(stride), plus a (1x1 conv) shortcut."""

    def __init__(self, c_in: int, c_out: int, dropout_rate: float, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = _conv3x3(c_in, c_out)
        self.dropout = nn.Dropout(p=dropout_rate)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = _conv3x3(c_out, c_out, stride)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=True))

    def forward(self, x):
        out = self.dropout(self.conv1(self.bn1(x).relu()))
        out = self.conv2(self.bn2(out).relu())
        return out + self.shortcut(x)


class Wide_ResNet(FreezableBatchNorm):  # noqa: N801 (upstream's name)
    """WRN-``depth``-``widen_factor``: ``n_outputs = 64 * widen_factor`` (128 for WRN-16-2)."""

    def __init__(self, input_shape, depth: int = 16, widen_factor: int = 2,
                 dropout_rate: float = 0.0, freeze_bn: bool = False):
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise BackboneError(f"Wide_ResNet depth must be 6n+4 (e.g. 16, 22, 28), got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = _conv3x3(input_shape[0], widths[0])
        layers, c_in = [], widths[0]
        for width, stride in zip(widths[1:], (1, 2, 2)):
            for k in range(n):
                layers.append(WideBasicBlock(c_in, width, dropout_rate, stride if k == 0 else 1))
                c_in = width
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(widths[3], momentum=0.9)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.n_outputs = widths[3]
        self._set_freeze_bn(freeze_bn)

    def forward(self, x):
        out = self.layers(self.conv1(x))
        return self.pool(self.bn(out).relu()).flatten(1)


@BACKBONES.register("wide_resnet")
def _wide_resnet(input_shape, hparams):
    return Wide_ResNet(input_shape, 16, 2, 0.0, freeze_bn=hparams.get("freeze_bn", False))
