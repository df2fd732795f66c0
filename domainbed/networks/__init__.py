"""Networks: ``Featurizer(input_shape, hparams)`` picks a backbone; ``Classifier`` is the head."""

# importing a module registers its backbones
from domainbed.networks import resnet, timm_backbones, wide_resnet  # noqa: F401
from domainbed.networks.backbones import (BACKBONE_HPARAMS, BACKBONES, MLP, MNIST_CNN,
                                          NETWORK_HPARAMS, BackboneError, SmallCNN, TinyCNN)
from domainbed.networks.batch_norm import freeze_batch_norm
from domainbed.networks.featurizer import Featurizer, backbone_name, build_backbone
from domainbed.networks.heads import Classifier
from domainbed.networks.resnet import ResNet
from domainbed.networks.timm_backbones import DinoV2, TimmBackbone
from domainbed.networks.wide_resnet import Wide_ResNet

__all__ = ["BACKBONES", "BACKBONE_HPARAMS", "BackboneError", "Classifier", "DinoV2",
           "Featurizer", "MLP", "MNIST_CNN", "NETWORK_HPARAMS", "ResNet", "SmallCNN",
           "TimmBackbone", "TinyCNN", "Wide_ResNet", "backbone_name", "build_backbone",
           "freeze_batch_norm"]
