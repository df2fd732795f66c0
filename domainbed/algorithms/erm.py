"""Empirical risk minimisation (vanilla fine-tuning) and the shared featurizer/classifier setup."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from domainbed import networks
from domainbed.algorithms.base import (Algorithm, concat_minibatches, make_optimizer,
                                       register_algorithm)


@register_algorithm(family="erm")
class ERM(Algorithm):
    """Minimise the average loss over all training domains."""

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self.featurizer = networks.Featurizer(input_shape, hparams)
        self.classifier = networks.Classifier(
            self.featurizer.n_outputs, num_classes, hparams.get("nonlinear_classifier", False))
        self.network = nn.Sequential(self.featurizer, self.classifier)
        self.optimizer = make_optimizer(self.network.parameters(), hparams)

    def reset_optimizer(self, parameters=None) -> None:
        """Re-create the optimiser (fresh Adam moments), over ``parameters`` or all of them."""
        params = self.network.parameters() if parameters is None else parameters
        self.optimizer = make_optimizer(params, self.hparams)

    grad_scaler = None  # set by the training loop for fp16 mixed precision

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        if self.grad_scaler is None:
            loss.backward()
            self.optimizer.step()
            return
        self.grad_scaler.scale(loss).backward()
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def update(self, minibatches, unlabeled=None):
        x, y = concat_minibatches(minibatches)
        loss = F.cross_entropy(self.predict(x), y)
        self.step(loss)
        return {"loss": loss.item()}

    def predict(self, x):
        return self.network(x)
