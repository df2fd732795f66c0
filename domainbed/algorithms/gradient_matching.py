"""Algorithms that act on per-domain gradients: Fish, ANDMask, SANDMask, IGA and Fishr.

(TRM, which matches gradients of per-domain heads, lives in ``trm.py``.)
"""

from typing import List, Tuple

import torch
import torch.autograd as autograd
import torch.nn as nn
import torch.nn.functional as F

from domainbed import networks
from domainbed.algorithms.base import (Algorithm, concat_minibatches, make_optimizer,
                                       register_algorithm)
from domainbed.algorithms.erm import ERM


class WholeFish(nn.Module):
    """``net = Sequential(Featurizer, Classifier)``, optionally loaded with ``weights``."""

    def __init__(self, input_shape, num_classes, hparams, weights=None):
        super().__init__()
        featurizer = networks.Featurizer(input_shape, hparams)
        classifier = networks.Classifier(featurizer.n_outputs, num_classes,
                                         hparams.get("nonlinear_classifier", False))
        self.net = nn.Sequential(featurizer, classifier)
        if weights is not None:
            self.reset_weights(weights)

    def reset_weights(self, weights) -> None:
        """Load a copy of ``weights`` (a state dict of this module)."""
        self.load_state_dict(weights)

    def forward(self, x):
        return self.net(x)


@register_algorithm()
class Fish(Algorithm):
    """Fish (Shi et al., 2022): E sequential inner Adam steps (one per domain) on a clone,
    then move the weights a ``meta_lr`` fraction of the way to the clone's."""

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("meta_lr", 0.5, lambda r: r.choice([0.05, 0.1, 0.5]))

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self.network = WholeFish(input_shape, num_classes, hparams)
        self.optimizer = make_optimizer(self.network.parameters(), hparams)  # never stepped
        self.optimizer_inner_state = None  # the inner Adam's moments carry over

    @property
    def featurizer(self) -> nn.Module:
        return self.network.net[0]

    @property
    def classifier(self) -> nn.Module:
        return self.network.net[1]

    def inner_network(self, device) -> WholeFish:
        # a fresh build, as upstream (it draws the default init from the torch RNG); the
        # state dict is loaded right after, so pretrained weights need not be read again
        clone_hparams = dict(self.hparams, pretrained=False)
        return WholeFish(self.input_shape, self.num_classes, clone_hparams,
                         weights=self.network.state_dict()).to(device)

    def update(self, minibatches, unlabeled=None):
        inner = self.inner_network(minibatches[0][0].device)
        optimizer = make_optimizer(inner.parameters(), self.hparams)
        if self.optimizer_inner_state is not None:
            optimizer.load_state_dict(self.optimizer_inner_state)
        for x, y in minibatches:
            loss = F.cross_entropy(inner(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        self.optimizer_inner_state = optimizer.state_dict()
        self.meta_step(inner)
        return {"loss": loss.item()}

    @torch.no_grad()
    def meta_step(self, inner: nn.Module) -> None:
        """theta <- theta + meta_lr * (theta_inner - theta) on every state-dict entry; integer
        buffers (BN batch counts) are interpolated in float and truncated back (upstream)."""
        meta_lr = self.hparams["meta_lr"]
        outer, new = self.network.state_dict(), inner.state_dict()
        self.network.load_state_dict(
            {k: outer[k] + meta_lr * (new[k] - outer[k]) for k in outer})

    def predict(self, x):
        return self.network(x)

    def extra_state(self) -> dict:
        return {"optimizer_inner_state": self.optimizer_inner_state}

    def load_extra_state(self, state: dict) -> None:
        self.optimizer_inner_state = state["optimizer_inner_state"]


def per_domain_gradients(network: nn.Module, minibatches, create_graph: bool = False,
                         retain_graph: bool = False) -> Tuple[List[torch.Tensor], List[tuple]]:
    """Each domain's loss ``CE(network(x_e), y_e)`` (separate forwards) and its gradients
    with respect to every parameter of ``network``, in ``parameters()`` order."""
    params = list(network.parameters())
    losses, grads = [], []
    for x, y in minibatches:
        loss = F.cross_entropy(network(x), y)
        losses.append(loss)
        grads.append(autograd.grad(loss, params, create_graph=create_graph,
                                   retain_graph=retain_graph or create_graph))
    return losses, grads


class _MaskedGradient(ERM):
    """Step on the mean of the per-domain gradients, masked where the domains disagree."""

    RETAIN_GRAPH = False

    def mask(self, grads: torch.Tensor) -> torch.Tensor:
        """The mask for one parameter, given its per-domain gradients stacked on dim 0."""
        raise NotImplementedError

    def update(self, minibatches, unlabeled=None):
        losses, grads = per_domain_gradients(self.network, minibatches,
                                             retain_graph=self.RETAIN_GRAPH)
        mean_loss = sum(loss.item() / len(minibatches) for loss in losses)
        self.optimizer.zero_grad()
        for i, param in enumerate(self.network.parameters()):
            stacked = torch.stack([g[i] for g in grads])
            mask = self.mask(stacked)
            param.grad = mask * stacked.mean(0) / (1e-10 + self.mask_fraction(mask))
        self.optimizer.step()
        self.after_masked_step()
        return {"loss": mean_loss}

    @staticmethod
    def mask_fraction(mask: torch.Tensor) -> torch.Tensor:
        return mask.sum() / mask.numel()

    def after_masked_step(self) -> None:
        pass


@register_algorithm()
class ANDMask(_MaskedGradient):
    """AND-mask (Parascandolo et al., 2021): keep the gradient components whose sign agrees
    across at least a ``tau`` share of the domains, net of disagreeing ones."""

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("tau", 1, lambda r: r.uniform(0.5, 1.0))

    def mask(self, grads):
        agreement = torch.sign(grads).mean(0).abs()
        return (agreement >= self.hparams["tau"]).to(torch.float32)


@register_algorithm()
class SANDMask(_MaskedGradient):
    """SAND-mask (Shahtalebi et al., 2021): a smooth mask, tanh of the sign agreement above
    ``tau`` scaled by ``k`` over the gradients' variance across domains."""

    RETAIN_GRAPH = True

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("tau", 1.0, lambda r: r.uniform(0.0, 1.0))
        hp("k", 1e1, lambda r: 10 ** r.uniform(-3, 5))

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self.register_buffer("update_count", torch.tensor([0]))

    def mask(self, grads):
        gamma = 1.0
        variance = torch.nan_to_num(grads.var(0, unbiased=True), nan=1e-17)  # NaN when E=1
        scale = 1.0 / (gamma * variance)
        agreement = torch.sign(grads).mean(0).abs()
        mask = torch.tanh(self.hparams["k"] * scale * (agreement - self.hparams["tau"]))
        return torch.nan_to_num(mask.clamp_min(0.0), nan=1e-17)

    @staticmethod
    def mask_fraction(mask):
        return mask.mean()

    def after_masked_step(self):
        self.update_count += 1


@register_algorithm()
class IGA(ERM):
    """Inter-environmental gradient alignment (Koyama & Yamaguchi, 2020): penalise the
    squared distance of each domain's gradient to the mean gradient."""

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("penalty", 1000, lambda r: 10 ** r.uniform(1, 5))

    def __init__(self, in_features, num_classes, num_domains, hparams):  # upstream's arg name
        super().__init__(in_features, num_classes, num_domains, hparams)

    def update(self, minibatches, unlabeled=None):
        losses, grads = per_domain_gradients(self.network, minibatches, create_graph=True)
        mean_loss = sum(losses) / len(minibatches)
        mean_grad = autograd.grad(mean_loss, list(self.network.parameters()), retain_graph=True)
        penalty = sum((g_e - g_mean).pow(2).sum()
                      for domain_grads in grads for g_e, g_mean in zip(domain_grads, mean_grad))
        self.step(mean_loss + self.hparams["penalty"] * penalty)
        return {"loss": mean_loss.item(), "penalty": penalty.item()}


def per_sample_head_gradients(head: nn.Module, z: torch.Tensor,
                              y: torch.Tensor) -> List[torch.Tensor]:
    """Per-row gradients of ``CE_i(head(z_i), y_i)`` with respect to each parameter of
    ``head`` (``named_parameters`` order), each flattened to (B, numel), differentiable with
    respect to ``z`` and the head's parameters (what BackPACK's BatchGrad gives upstream)."""
    if isinstance(head, nn.Linear):
        # closed form: d CE_i / d logits_i = softmax_i - onehot_i
        delta = torch.softmax(head(z), dim=1) - F.one_hot(y, head.out_features).to(z.dtype)
        grads = [(delta[:, :, None] * z[:, None, :]).flatten(1)]
        if head.bias is not None:
            grads.append(delta)
        return grads
    from torch.func import functional_call, grad, vmap
    params = dict(head.named_parameters())

    def row_loss(p, z_i, y_i):
        return F.cross_entropy(functional_call(head, p, (z_i[None],)), y_i[None])

    per_row = vmap(grad(row_loss), in_dims=(None, 0, 0))(params, z, y)
    return [per_row[name].flatten(1) for name in params]


@register_algorithm()
class Fishr(ERM):
    """Fishr (Rame et al., 2022): match across domains the variances of the per-sample
    gradients of the classifier, tracked by a per-domain moving average."""

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("lambda", 1000.0, lambda r: 10 ** r.uniform(1.0, 4.0))
        hp("penalty_anneal_iters", 1500, lambda r: int(r.uniform(0.0, 5000.0)))
        hp("ema", 0.95, lambda r: r.uniform(0.90, 0.99))

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self.register_buffer("update_count", torch.tensor([0]))
        self.ema_per_domain = None  # (E, classifier numel); zeros = upstream's empty average

    def gradient_variances(self, z, y, sizes) -> torch.Tensor:
        """Per-domain biased variances of the classifier's per-sample gradients, (E, numel),
        each domain's through the moving average (``ema`` with the 1/(1-ema) correction)."""
        grads = torch.cat(per_sample_head_gradients(self.classifier, z, y), dim=1)
        variances = torch.stack([(g - g.mean(0, keepdim=True)).pow(2).mean(0)
                                 for g in grads.split(sizes)])
        ema = self.hparams["ema"]
        if self.ema_per_domain is None:
            self.ema_per_domain = torch.zeros_like(variances).detach()
        averaged = ema * self.ema_per_domain.to(variances.device) + (1 - ema) * variances
        self.ema_per_domain = averaged.detach()
        return averaged / (1 - ema)

    def penalty(self, z, y, sizes) -> torch.Tensor:
        variances = self.gradient_variances(z, y, sizes)
        mean = variances.mean(0, keepdim=True)
        return (variances - mean).pow(2).mean(1).sum() / len(sizes)

    def update(self, minibatches, unlabeled=None):
        if len(minibatches) != self.num_domains:
            raise ValueError(f"Fishr got {len(minibatches)} training domains but was built for "
                             f"{self.num_domains}; pass one minibatch per training domain")
        x, y = concat_minibatches(minibatches)
        z = self.featurizer(x)
        logits = self.classifier(z)
        penalty = self.penalty(z, y, [len(t) for _, t in minibatches])
        nll = F.cross_entropy(logits, y)
        anneal = self.hparams["penalty_anneal_iters"]
        count = int(self.update_count.item())
        weight = self.hparams["lambda"] if count >= anneal else 0.0
        if count == anneal and anneal != 0:
            self.reset_optimizer()
        self.update_count += 1
        objective = nll + weight * penalty
        self.step(objective)
        return {"loss": objective.item(), "nll": nll.item(), "penalty": penalty.item()}

    def extra_state(self) -> dict:
        return {"ema_per_domain": self.ema_per_domain}

    def load_extra_state(self, state: dict) -> None:
        self.ema_per_domain = state["ema_per_domain"]
