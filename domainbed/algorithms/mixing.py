"""Algorithms that mix or match domains: Mixup (inter-domain), CORAL and MMD."""

import numpy as np
import torch
import torch.nn.functional as F

from domainbed.algorithms.base import random_pairs_of_minibatches, register_algorithm
from domainbed.algorithms.erm import ERM


@register_algorithm()
class Mixup(ERM):
    """Inter-domain mixup: convex combinations of examples from pairs of domains."""

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("mixup_alpha", 0.2, lambda r: 10 ** r.uniform(-1, 1))

    def update(self, minibatches, unlabeled=None):
        objective = 0.0
        pairs = random_pairs_of_minibatches(minibatches)
        for (xi, yi), (xj, yj) in pairs:
            lam = float(np.random.beta(self.hparams["mixup_alpha"], self.hparams["mixup_alpha"]))
            logits = self.predict(lam * xi + (1 - lam) * xj)
            objective = objective + lam * F.cross_entropy(logits, yi) \
                + (1 - lam) * F.cross_entropy(logits, yj)
        objective = objective / len(pairs)
        self.step(objective)
        return {"loss": objective.item()}


MMD_GAMMAS = (0.001, 0.01, 0.1, 1, 10, 100, 1000)


def _sq_distances(x, y):
    x_norm = x.pow(2).sum(-1, keepdim=True)
    y_norm = y.pow(2).sum(-1, keepdim=True)
    return torch.addmm(y_norm.transpose(-2, -1), x, y.transpose(-2, -1), alpha=-2) \
        .add_(x_norm).clamp_min_(1e-30)


def _kernel(x, y, gammas):
    distances = _sq_distances(x, y)
    return sum(torch.exp(distances * -g) for g in gammas)


def gaussian_mmd(x, y, gammas=MMD_GAMMAS):
    """MMD between the rows of ``x`` and ``y`` with a sum of Gaussian kernels exp(-g d^2)."""
    return _kernel(x, x, gammas).mean() + _kernel(y, y, gammas).mean() \
        - 2 * _kernel(x, y, gammas).mean()


def coral_distance(x, y):
    """Mean squared gap between the rows' means plus that between their covariances."""
    mean_x, mean_y = x.mean(0, keepdim=True), y.mean(0, keepdim=True)
    cent_x, cent_y = x - mean_x, y - mean_y
    cova_x = cent_x.t() @ cent_x / (len(x) - 1)
    cova_y = cent_y.t() @ cent_y / (len(y) - 1)
    return (mean_x - mean_y).pow(2).mean() + (cova_x - cova_y).pow(2).mean()


class _FeatureMatching(ERM):
    """ERM plus ``mmd_gamma`` times a distance between the domains' feature distributions."""

    GAUSSIAN = False

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("mmd_gamma", 1.0, lambda r: 10 ** r.uniform(-1, 1))

    def distance(self, x, y):
        return gaussian_mmd(x, y) if self.GAUSSIAN else coral_distance(x, y)

    def update(self, minibatches, unlabeled=None):
        n = len(minibatches)
        features = [self.featurizer(x) for x, _ in minibatches]
        objective = sum(F.cross_entropy(self.classifier(f), y)
                        for f, (_, y) in zip(features, minibatches)) / n
        penalty = torch.zeros((), device=objective.device)
        n_pairs = n * (n - 1) / 2
        for i in range(n):
            for j in range(i + 1, n):
                penalty = penalty + self.distance(features[i], features[j])
        if n_pairs:
            penalty = penalty / n_pairs
        self.step(objective + self.hparams["mmd_gamma"] * penalty)
        return {"loss": objective.item(), "penalty": penalty.item()}


@register_algorithm(family="coral")
class CORAL(_FeatureMatching):
    """Match the means and covariances of the domains' features."""


@register_algorithm()
class MMD(_FeatureMatching):
    """Match the domains' features with a multi-bandwidth Gaussian-kernel MMD."""

    GAUSSIAN = True
