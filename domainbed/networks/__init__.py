"""Networks: ``Featurizer(input_shape, hparams)`` picks a backbone; ``Classifier`` is the head."""

from domainbed.networks.backbones import (BACKBONES, MLP, MNIST_CNN, ResNet, SmallCNN, TinyCNN,
                                          build_backbone)
from domainbed.networks.heads import Classifier
from domainbed.networks.featurizer import Featurizer, backbone_name

__all__ = ["BACKBONES", "Classifier", "Featurizer", "MLP", "MNIST_CNN", "ResNet", "SmallCNN",
           "TinyCNN", "backbone_name", "build_backbone"]
