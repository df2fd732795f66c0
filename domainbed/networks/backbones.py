"""The backbone registry, plus the small backbones: MLP and CNNs for 28x28 / 32x32 inputs.

A backbone is built by name: ``featurizer.build_backbone(name, input_shape, hparams)``. Names
are registered where each backbone is defined (this module, ``resnet``, ``wide_resnet``,
``timm_backbones``); ``timm:<model name>`` builds any timm model. Every backbone maps a batch
of inputs to ``(batch, n_outputs)`` features.
"""

import torch
import torch.nn as nn

from domainbed.errors import DomainBedError
from domainbed.registry import Registry

BACKBONES: Registry = Registry("backbone")
TIMM_PREFIX = "timm:"

# the hparams the backbones read (beyond the declared base ones), for the hparams checker
BACKBONE_HPARAMS = ("backbone", "pretrained", "pretrained_path", "dropout_reference_width")
# every hparam that shapes a trained network (featurizer and head) or its input; what a
# saved model folder keeps to rebuild it (weights come from the folder, never downloaded)
NETWORK_HPARAMS = ("backbone", "resnet18", "resnet50_augmix", "vit", "dinov2", "vit_dropout",
                   "vit_attn_tune", "resnet_dropout", "freeze_bn", "mlp_width", "mlp_depth",
                   "mlp_dropout", "nonlinear_classifier", "image_size", "image_channels",
                   "dropout_reference_width")


def feature_dropout(hparams, n_features: int, key: str = "resnet_dropout") -> float:
    """The dropout rate on ``n_features`` pooled features: ``hparams[key]``, or, when
    ``hparams['dropout_reference_width']`` = W is set, the rate that perturbs a linear head's
    logits as much as ``hparams[key]`` does on W features (the paper's rates are for
    ResNet-50's 2048). Dropout's noise on a logit, relative to the logit, has a variance of
    about p / ((1 - p) n) over n comparable features, so p' / (1 - p') = p / (1 - p) x n / W:
    0.5 on 2048 features is 0.03 on 64, a "mild" perturbation at both widths."""
    p = float(hparams.get(key, 0.0))
    width = hparams.get("dropout_reference_width")
    if not width or p <= 0.0:
        return p
    if p >= 1.0:
        return p
    odds = p / (1.0 - p) * n_features / float(width)
    return odds / (1.0 + odds)


class BackboneError(DomainBedError):
    """An unknown backbone name, or a backbone that cannot be built here."""


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
    benchmark so that the whole recipe runs on a laptop CPU in minutes. Dropout
    ``feature_dropout`` on the pooled features, as ResNets do with ``resnet_dropout``.
    """

    n_outputs = 64

    def __init__(self, input_shape, feature_dropout: float = 0.0):
        super().__init__()
        self.features = _conv_stack([input_shape[0], 16, 32, 64, 64], [1, 2, 2, 2],
                                    norm_after_relu=False)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dropout = float(feature_dropout)

    def forward(self, x):
        features = self.pool(self.features(x)).flatten(1)
        if self.feature_dropout > 0:  # p = 0 draws nothing: runs without dropout are unchanged
            features = nn.functional.dropout(features, self.feature_dropout, self.training)
        return features


@BACKBONES.register("tiny_cnn")
def _tiny_cnn(input_shape, hparams):
    # the paper's dropout hyperparameter (resnet_dropout) is this backbone's feature dropout
    return TinyCNN(input_shape, feature_dropout(hparams, TinyCNN.n_outputs))
