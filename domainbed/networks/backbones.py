"""Backbones, registered by name: MLP, a small CNN for 28x28 / 32x32 inputs, ResNet-18/50."""

import torch
import torch.nn as nn

from domainbed.networks.pretrained import load_pretrained_resnet
from domainbed.registry import Registry

BACKBONES: Registry = Registry("backbone")


def build_backbone(name: str, input_shape, hparams) -> nn.Module:
    return BACKBONES.get(name)(input_shape, hparams)


class MLP(nn.Module):
    """A fully connected network for vector inputs."""

    def __init__(self, n_inputs: int, n_outputs: int, hparams):
        super().__init__()
        width, depth = hparams["mlp_width"], hparams["mlp_depth"]
        self.input = nn.Linear(n_inputs, width)
        self.dropout = nn.Dropout(hparams["mlp_dropout"])
        self.hiddens = nn.ModuleList(nn.Linear(width, width) for _ in range(depth - 2))
        self.output = nn.Linear(width, n_outputs)
        self.n_outputs = n_outputs

    def forward(self, x):
        x = self.dropout(torch.relu(self.input(x)))
        for hidden in self.hiddens:
            x = self.dropout(torch.relu(hidden(x)))
        return self.output(x)


@BACKBONES.register("mlp")
def _mlp(input_shape, hparams):
    return MLP(input_shape[0], hparams["mlp_width"], hparams)


def _conv_stack(channels, strides, norm_after_relu: bool) -> nn.Sequential:
    """3x3 convolutions, each with ReLU and 8-group normalisation."""
    layers = []
    for c_in, c_out, stride in zip(channels[:-1], channels[1:], strides):
        conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
        pair = [nn.ReLU(), nn.GroupNorm(8, c_out)]
        layers += [conv] + (pair if norm_after_relu else pair[::-1])
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """Four 3x3 convolutions with group norm, then global average pooling (128 features).

    Group norm keeps no running statistics, so weight averages need no re-estimation.
    Works for any input size from about 16x16 (MNIST 28x28, the embedded 32x32 data).
    """

    n_outputs = 128

    def __init__(self, input_shape):
        super().__init__()
        self.features = _conv_stack([input_shape[0], 64, 128, 128, 128], [1, 2, 1, 1],
                                    norm_after_relu=True)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, x):
        return self.pool(self.features(x)).flatten(1)


MNIST_CNN = SmallCNN  # upstream's name


@BACKBONES.register("small_cnn")
def _small_cnn(input_shape, hparams):
    return SmallCNN(input_shape)


class TinyCNN(nn.Module):
    """A CPU-friendly CNN for 32x32 inputs (about 3.5M multiply-adds per image, 64 features).

    Four stride-2-after-the-first 3x3 convolutions with group norm; used by the embedded
    benchmark so that the whole recipe runs on a laptop CPU in minutes.
    """

    n_outputs = 64

    def __init__(self, input_shape):
        super().__init__()
        self.features = _conv_stack([input_shape[0], 16, 32, 64, 64], [1, 2, 2, 2],
                                    norm_after_relu=False)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, x):
        return self.pool(self.features(x)).flatten(1)


@BACKBONES.register("tiny_cnn")
def _tiny_cnn(input_shape, hparams):
    return TinyCNN(input_shape)


def _freeze_bn(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()


class ResNet(nn.Module):
    """A torchvision ResNet without its fc layer, frozen batch norm and feature dropout.

    Batch-norm layers stay in eval mode (running statistics frozen) at build time and after
    every ``train()`` call; their affine parameters are still trained, as in the paper.
    """

    def __init__(self, input_shape, hparams, depth: int = 50):
        super().__init__()
        import torchvision
        builder = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}[depth]
        self.network = builder(weights=None)
        if hparams.get("pretrained", True):
            load_pretrained_resnet(self.network, depth, hparams.get("pretrained_path"))
        self.n_outputs = self.network.fc.in_features
        n_channels = input_shape[0]
        if n_channels != 3:
            # reuse the RGB filters cyclically for other channel counts
            old = self.network.conv1.weight.data.clone()
            self.network.conv1 = nn.Conv2d(n_channels, 64, kernel_size=7, stride=2, padding=3,
                                           bias=False)
            for i in range(n_channels):
                self.network.conv1.weight.data[:, i] = old[:, i % 3]
        self.network.fc = nn.Identity()
        self.dropout = nn.Dropout(hparams.get("resnet_dropout", 0.0))
        _freeze_bn(self)

    def forward(self, x):
        return self.dropout(self.network(x))

    def train(self, mode: bool = True):
        super().train(mode)
        _freeze_bn(self)
        return self


@BACKBONES.register("resnet18")
def _resnet18(input_shape, hparams):
    return ResNet(input_shape, hparams, depth=18)


@BACKBONES.register("resnet50")
def _resnet50(input_shape, hparams):
    return ResNet(input_shape, hparams, depth=50)
