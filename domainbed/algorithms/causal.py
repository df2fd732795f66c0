"""Causal and contrastive invariance: CAD and CondCAD (contrastive adversarial domain
bottleneck, Ruan et al.), CausIRL_CORAL and CausIRL_MMD (Chevalley et al.)."""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from domainbed import networks
from domainbed.algorithms.base import (Algorithm, concat_minibatches, make_optimizer,
                                       register_algorithm)
from domainbed.algorithms.blocks import domain_labels
from domainbed.algorithms.erm import ERM
from domainbed.algorithms.mixing import CORAL, coral_distance, gaussian_mmd

BASE_TEMPERATURE = 0.07


def finite_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over the finite entries of ``x``; 0 when none is finite."""
    finite = torch.isfinite(x)
    n_finite = finite.float().sum()
    total = torch.where(finite, x, torch.zeros_like(x)).sum()
    if n_finite != 0:
        return total / n_finite
    return torch.tensor(0.0).to(x)


def bottleneck_loss(z, y, d, temperature: float, conditional: bool, flipped: bool,
                    normalized: bool = False) -> torch.Tensor:
    """CAD's supervised-contrastive domain bottleneck on features ``z`` (B x n).

    Unconditional: the log of the softmax mass (over all other rows) that each row puts on
    rows of other domains (``flipped``, minimised negated) or of its own domain, self
    included (not flipped); rows without a same-label partner are left out. Conditional:
    the same with the softmax over same-label other rows only. Scaled by
    ``temperature / 0.07``; the mean is over the finite row losses (see :func:`finite_mean`).
    """
    batch_size = z.shape[0]
    y, d = y.view(-1, 1), d.view(-1, 1)
    mask_drop = ~torch.eye(batch_size, dtype=torch.bool, device=z.device)
    mask_y = (y == y.T) & mask_drop
    mask_d = d == d.T
    mask_y_n_d = mask_y & ~mask_d
    mask_y_d = mask_y & mask_d
    if normalized:
        z = F.normalize(z, dim=1)
    logits = (z @ z.T / temperature) * mask_drop.float()
    logits = logits - logits.max(dim=1, keepdim=True)[0].detach()
    scale = temperature / BASE_TEMPERATURE
    if not conditional:
        log_prob = logits - torch.logsumexp(logits + mask_drop.float().log(), dim=1,
                                            keepdim=True)
        valid = mask_y.sum(1) > 0
        log_prob, mask_d = log_prob[valid], mask_d[valid]
        if flipped:
            loss = -scale * torch.logsumexp(log_prob + (~mask_d).float().log(), dim=1)
        else:
            loss = scale * torch.logsumexp(log_prob + mask_d.float().log(), dim=1)
    else:
        valid = (mask_y_n_d if flipped else mask_y_d).sum(1) > 0
        mask_y, mask_y_d, mask_y_n_d = mask_y[valid], mask_y_d[valid], mask_y_n_d[valid]
        logits = logits[valid]
        log_prob_y = logits - torch.logsumexp(logits + mask_y.float().log(), dim=1,
                                              keepdim=True)
        if flipped:
            loss = -scale * torch.logsumexp(log_prob_y + mask_y_n_d.float().log(), dim=1)
        else:
            loss = scale * torch.logsumexp(log_prob_y + mask_y_d.float().log(), dim=1)
    return finite_mean(loss)


class _AbstractCAD(Algorithm):
    """ERM's featurizer and classifier plus ``lmbda`` times the contrastive bottleneck."""

    CONDITIONAL = False

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("lmbda", 1e-1, lambda r: r.choice([1e-4, 1e-3, 1e-2, 1e-1, 1, 1e1, 1e2]))
        hp("temperature", 0.1, lambda r: r.choice([0.05, 0.1]))
        hp("is_normalized", False, lambda r: False)
        hp("is_project", False, lambda r: False)
        hp("is_flipped", True, lambda r: True)

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self.featurizer = networks.Featurizer(input_shape, hparams)
        self.classifier = networks.Classifier(self.featurizer.n_outputs, num_classes,
                                              hparams.get("nonlinear_classifier", False))
        params = list(self.featurizer.parameters()) + list(self.classifier.parameters())
        self.is_project = bool(hparams["is_project"])
        if self.is_project:
            # upstream names an undefined width here (NameError); n_outputs is the intent
            width = self.featurizer.n_outputs
            self.project = nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True),
                                         nn.Linear(width, 128))
            params += list(self.project.parameters())
        self.optimizer = make_optimizer(params, hparams)

    def bn_loss(self, z, y, d):
        if self.is_project:
            z = self.project(z)
        return bottleneck_loss(z, y, d, self.hparams["temperature"], self.CONDITIONAL,
                               bool(self.hparams["is_flipped"]),
                               bool(self.hparams["is_normalized"]))

    def update(self, minibatches, unlabeled=None):
        x, y = concat_minibatches(minibatches)
        z = self.featurizer(x)
        bn = self.bn_loss(z, y, domain_labels(minibatches))
        clf = F.cross_entropy(self.classifier(z), y)
        total = clf + self.hparams["lmbda"] * bn
        self.optimizer.zero_grad()
        total.backward()
        self.optimizer.step()
        return {"clf_loss": clf.item(), "bn_loss": bn.item(), "total_loss": total.item()}

    def predict(self, x):
        return self.classifier(self.featurizer(x))


@register_algorithm()
class CAD(_AbstractCAD):
    """Contrastive adversarial domain bottleneck: features that do not reveal the domain."""


@register_algorithm()
class CondCAD(_AbstractCAD):
    """Conditional CAD: features that do not reveal the domain given the label."""

    CONDITIONAL = True


class _CausIRL(ERM):
    """Match the feature distributions of two random halves of the pooled batch: each
    domain's batch is cut at a random row (numpy draw per domain, in order), the heads
    pooled into one set and the tails into the other; penalty ``mmd_gamma`` times the
    CORAL or MMD distance between them (0 when a set has fewer than two rows)."""

    GAUSSIAN = False

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        CORAL.declare_hparams(dataset, hp, small_images)  # mmd_gamma: the same registry line

    def distance(self, x, y):
        return gaussian_mmd(x, y) if self.GAUSSIAN else coral_distance(x, y)

    def update(self, minibatches, unlabeled=None):
        n = len(minibatches)
        objective = 0.0
        first, second = [], []
        for x, y in minibatches:
            features = self.featurizer(x)
            objective = objective + F.cross_entropy(self.classifier(features) + 1e-16, y)
            cut = np.random.randint(0, len(features))
            first.append(features[:cut])
            second.append(features[cut:])
        first, second = torch.cat(first), torch.cat(second)
        if len(first) > 1 and len(second) > 1:
            penalty = torch.nan_to_num(self.distance(first, second))
        else:
            penalty = torch.tensor(0, device=first.device)
        objective = objective / n
        self.step(objective + self.hparams["mmd_gamma"] * penalty)
        return {"loss": objective.item(), "penalty": float(penalty.item())}


@register_algorithm()
class CausIRL_CORAL(_CausIRL):
    """CausIRL with the CORAL distance (means and covariances)."""


@register_algorithm()
class CausIRL_MMD(_CausIRL):
    """CausIRL with the multi-bandwidth Gaussian-kernel MMD."""

    GAUSSIAN = True
