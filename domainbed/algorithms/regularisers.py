"""ERM with a regulariser on features or logits: RSC, SD, SelfReg, and MTL (marginal
transfer learning, which feeds the classifier a domain summary next to the features)."""

import numpy as np
import torch
import torch.autograd as autograd
import torch.nn as nn
import torch.nn.functional as F

from domainbed import networks
from domainbed.algorithms.base import (Algorithm, concat_minibatches, make_optimizer,
                                       register_algorithm)
from domainbed.algorithms.erm import ERM


def below_percentile(values: torch.Tensor, level: float, axis=None) -> torch.Tensor:
    """``1[values < numpy.percentile(values, level, axis)]`` (linear interpolation, on a CPU
    copy, as upstream), as a float tensor on ``values``' device."""
    threshold = np.percentile(values.detach().cpu().numpy(), level, axis=axis)
    threshold = torch.as_tensor(threshold, device=values.device)
    if axis is not None:
        threshold = threshold.unsqueeze(axis)
    return (values < threshold).to(values.dtype)


@register_algorithm()
class RSC(ERM):
    """Representation self-challenging (Huang et al., 2020): drop the features with the
    largest gradient on the true-class logit, for the rows whose confidence drops most."""

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("rsc_f_drop_factor", 1 / 3, lambda r: r.uniform(0, 0.5))
        hp("rsc_b_drop_factor", 1 / 3, lambda r: r.uniform(0, 0.5))

    def challenge_mask(self, features, logits, y) -> torch.Tensor:
        """1 where a feature is kept: per row, features under the ``(1 - f_drop)`` gradient
        percentile; whole rows under the ``(1 - b_drop)`` percentile of the confidence drop."""
        drop_f = (1 - self.hparams["rsc_f_drop_factor"]) * 100
        drop_b = (1 - self.hparams["rsc_b_drop_factor"]) * 100
        one_hot = F.one_hot(y, self.num_classes).to(logits.dtype)
        grads = autograd.grad((logits * one_hot).sum(), features)[0]
        mask_f = below_percentile(grads, drop_f, axis=1)
        with torch.no_grad():
            confidence = (torch.softmax(logits, dim=1) * one_hot).sum(1)
            masked = (torch.softmax(self.classifier(features * mask_f), dim=1) * one_hot).sum(1)
        mask_b = below_percentile(confidence - masked, drop_b).view(-1, 1)
        return torch.logical_or(mask_f.bool(), mask_b.bool()).to(features.dtype)

    def update(self, minibatches, unlabeled=None):
        x, y = concat_minibatches(minibatches)
        features = self.featurizer(x)
        mask = self.challenge_mask(features, self.classifier(features), y)
        loss = F.cross_entropy(self.classifier(features * mask), y)
        self.step(loss)
        return {"loss": loss.item()}


@register_algorithm()
class SD(ERM):
    """Spectral decoupling (Pezeshki et al., 2021, Eq. 25): ERM + ``sd_reg * mean(logits^2)``."""

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("sd_reg", 0.1, lambda r: 10 ** r.uniform(-5, -1))

    def update(self, minibatches, unlabeled=None):
        x, y = concat_minibatches(minibatches)
        logits = self.predict(x)
        loss = F.cross_entropy(logits, y)
        penalty = (logits ** 2).mean()
        self.step(loss + self.hparams["sd_reg"] * penalty)
        return {"loss": loss.item(), "penalty": penalty.item()}


def projection_head(d: int) -> nn.Sequential:
    """SelfReg's class-discriminative projection (``cdpl``): three linear layers with BN."""
    h = d if d == 2048 else 2 * d
    return nn.Sequential(nn.Linear(d, h), nn.BatchNorm1d(h), nn.ReLU(),
                         nn.Linear(h, h), nn.BatchNorm1d(h), nn.ReLU(),
                         nn.Linear(h, d), nn.BatchNorm1d(d))


def same_class_permutations(y_sorted: torch.Tensor):
    """Two random permutations of the rows of a label-sorted batch, each within runs of equal
    labels (``randperm`` per run, first then second, run by run)."""
    ends, previous = [], 0
    for i, label in enumerate(y_sorted.tolist()):
        if label != previous:  # "previous" starts at 0: an empty first run is harmless
            ends.append(i)
            previous = label
    ends.append(len(y_sorted))
    first, second, start = [], [], 0
    for end in ends:
        first.append(torch.randperm(end - start) + start)
        second.append(torch.randperm(end - start) + start)
        start = end
    return torch.cat(first), torch.cat(second)


@register_algorithm()
class SelfReg(ERM):
    """Self-supervised contrastive regularisation (Kim et al., 2021): pull logits and
    features towards those of other (and mixed) same-class examples."""

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        # known upstream issue (#62) kept for parity: cdpl is built after the optimiser, so
        # it is never trained (only its BN running statistics move)
        self.cdpl = projection_head(self.featurizer.n_outputs)

    def update(self, minibatches, unlabeled=None):
        lam = float(np.random.beta(0.5, 0.5))
        x, y = concat_minibatches(minibatches)
        with torch.no_grad():
            y, order = torch.sort(y)
            x = x[order]
        feat = self.featurizer(x)
        proj = self.cdpl(feat)
        out = self.classifier(feat)
        perm_1, perm_2 = (p.to(y.device) for p in same_class_permutations(y))
        out_2, feat_2 = out[perm_1], proj[perm_1]
        out_3 = lam * out_2 + (1 - lam) * out[perm_2]
        feat_3 = lam * feat_2 + (1 - lam) * proj[perm_2]
        # the feature terms compare raw features with projected ones (upstream)
        ind = F.mse_loss(out, out_2) + 0.3 * F.mse_loss(feat, feat_2)
        hdl = F.mse_loss(out, out_3) + 0.3 * F.mse_loss(feat, feat_3)
        cl = F.cross_entropy(out, y)
        scale = min(cl.item(), 1.0)
        loss = cl + scale * (lam * ind + (1 - lam) * hdl)
        self.step(loss)
        return {"loss": loss.item()}


@register_algorithm()
class MTL(Algorithm):
    """Marginal transfer learning (Blanchard et al., 2021): the classifier sees the features
    next to a domain embedding (a moving average of the domain's mean feature)."""

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("mtl_ema", 0.99, lambda r: r.choice([0.5, 0.9, 0.99, 1.0]))

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self.featurizer = networks.Featurizer(input_shape, hparams)
        n = self.featurizer.n_outputs
        self.classifier = networks.Classifier(2 * n, num_classes,
                                              hparams.get("nonlinear_classifier", False))
        self.optimizer = make_optimizer(list(self.featurizer.parameters())
                                        + list(self.classifier.parameters()), hparams)
        self.register_buffer("embeddings", torch.zeros(num_domains, n))
        self.ema = hparams["mtl_ema"]

    def update(self, minibatches, unlabeled=None):
        loss = sum(F.cross_entropy(self.predict(x, env), y)
                   for env, (x, y) in enumerate(minibatches))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def update_embeddings_(self, features, env=None) -> torch.Tensor:
        """The batch's mean feature, for a training domain mixed into its embedding with
        weight ``ema`` on the current batch (upstream), which is then stored."""
        mean = features.mean(0)
        if env is not None:
            mean = self.ema * mean + (1 - self.ema) * self.embeddings[env]
            self.embeddings[env] = mean.detach()
        return mean

    def predict(self, x, env=None):
        features = self.featurizer(x)
        self.update_embeddings_(features, env)
        # known upstream bug (issue #159) kept for parity: the embedding half of the input is
        # overwritten with standard-normal noise, in training and evaluation alike
        noise = torch.randn(len(x), features.shape[1], device=features.device,
                            dtype=features.dtype)
        return self.classifier(torch.cat([features, noise], dim=1))
