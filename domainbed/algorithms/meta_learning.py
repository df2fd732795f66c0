"""Meta-learning and adaptation: MLDG, SagNet, ARM (contextual), Transfer."""

import copy

import torch
import torch.autograd as autograd
import torch.nn.functional as F

from domainbed import networks
from domainbed.algorithms.base import (Algorithm, concat_minibatches, make_optimizer,
                                       register_algorithm)
from domainbed.algorithms.blocks import ContextNet
from domainbed.algorithms.erm import ERM
from domainbed.lib.upstream_misc import proj, split_meta_train_test


@register_algorithm()
class MLDG(ERM):
    """Meta-learning domain generalisation (Li et al., 2018), first-order version.

    For each (meta-train, meta-test) pair, a copy of the network takes one Adam step on the
    meta-train loss; the network's gradient gets the copy's meta-train gradient plus
    ``mldg_beta`` times the meta-test gradient at the stepped copy, both divided by the
    number of domains. The main network never runs forward, so its batch-norm statistics
    stay as they are (upstream's behaviour).
    """

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("mldg_beta", 1.0, lambda r: 10 ** r.uniform(-1, 1))
        hp("n_meta_test", 2, lambda r: r.choice([1, 2]))

    def update(self, minibatches, unlabeled=None):
        num_mb = len(minibatches)
        beta = self.hparams["mldg_beta"]
        objective = 0.0
        self.optimizer.zero_grad()
        for p in self.network.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        for (xi, yi), (xj, yj) in split_meta_train_test(minibatches,
                                                        int(self.hparams["n_meta_test"])):
            inner_net = copy.deepcopy(self.network)
            inner_opt = make_optimizer(inner_net.parameters(), self.hparams)
            inner_obj = F.cross_entropy(inner_net(xi), yi)
            inner_opt.zero_grad()
            inner_obj.backward()
            inner_opt.step()
            for p, q in zip(self.network.parameters(), inner_net.parameters()):
                if q.grad is not None:
                    p.grad.data.add_(q.grad.data / num_mb)
            objective += inner_obj.item()
            loss_j = F.cross_entropy(inner_net(xj), yj)
            grads_j = autograd.grad(loss_j, list(inner_net.parameters()), allow_unused=True)
            objective += beta * loss_j.item()
            for p, g in zip(self.network.parameters(), grads_j):
                if g is not None:
                    p.grad.data.add_(beta * g.data / num_mb)
        objective /= len(minibatches)  # upstream divides by the domains, not the pairs
        self.optimizer.step()
        return {"loss": float(objective)}


def randomize_statistics(h: torch.Tensor, what: str, eps: float = 1e-5) -> torch.Tensor:
    """SagNet's randomisation of per-sample feature statistics (mean, unbiased variance).

    ``"style"`` mixes each sample's mean and variance with those of a random other sample
    (weight alpha ~ U[0, 1)); ``"content"`` keeps the sample's statistics but swaps in
    another sample's normalised (detached) features. Draws alpha, then the permutation, on
    the CPU generator.
    """
    sizes = h.size()
    alpha = torch.rand(sizes[0], 1).to(h.device)
    if len(sizes) == 4:
        h = h.view(sizes[0], sizes[1], -1)
        alpha = alpha.unsqueeze(-1)
    mean = h.mean(-1, keepdim=True)
    var = h.var(-1, keepdim=True)
    h = (h - mean) / (var + eps).sqrt()
    perm = torch.randperm(sizes[0])
    if what == "style":
        mean = alpha * mean + (1 - alpha) * mean[perm]
        var = alpha * var + (1 - alpha) * var[perm]
    elif what == "content":
        h = h[perm].detach()
    else:
        raise ValueError(f"randomize_statistics: what={what!r}; use 'style' or 'content'")
    return (h * (var + eps).sqrt() + mean).view(*sizes)


@register_algorithm()
class SagNet(Algorithm):
    """Style-agnostic networks (Nam et al.): a content head trained on style-randomised
    features, a style head trained on content-randomised features, and an adversarial
    step that pushes the featurizer to make the style head uniform."""

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("sag_w_adv", 0.1, lambda r: 10 ** r.uniform(-2, 1))

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        nonlinear = hparams.get("nonlinear_classifier", False)
        self.network_f = networks.Featurizer(input_shape, hparams)
        self.network_c = networks.Classifier(self.network_f.n_outputs, num_classes, nonlinear)
        self.network_s = networks.Classifier(self.network_f.n_outputs, num_classes, nonlinear)
        self.optimizer_f = make_optimizer(self.network_f.parameters(), hparams)
        self.optimizer_c = make_optimizer(self.network_c.parameters(), hparams)
        self.optimizer_s = make_optimizer(self.network_s.parameters(), hparams)
        self.weight_adv = hparams["sag_w_adv"]

    def forward_c(self, x):
        return self.network_c(randomize_statistics(self.network_f(x), "style"))

    def forward_s(self, x):
        return self.network_s(randomize_statistics(self.network_f(x), "content"))

    def update(self, minibatches, unlabeled=None):
        x, y = concat_minibatches(minibatches)
        self.optimizer_f.zero_grad()
        self.optimizer_c.zero_grad()
        loss_c = F.cross_entropy(self.forward_c(x), y)
        loss_c.backward()
        self.optimizer_f.step()
        self.optimizer_c.step()

        self.optimizer_s.zero_grad()
        loss_s = F.cross_entropy(self.forward_s(x), y)
        loss_s.backward()
        self.optimizer_s.step()

        self.optimizer_f.zero_grad()
        # cross-entropy to the uniform distribution over classes
        loss_adv = -F.log_softmax(self.forward_s(x), dim=1).mean(1).mean() * self.weight_adv
        loss_adv.backward()
        self.optimizer_f.step()
        return {"loss_c": loss_c.item(), "loss_s": loss_s.item(), "loss_adv": loss_adv.item()}

    def predict(self, x):
        return self.network_c(self.network_f(x))


@register_algorithm()
class ARM(ERM):
    """Adaptive risk minimisation, contextual variant (ARM-CML, Zhang et al.).

    The network sees the image plus one channel: the context net's output averaged over
    the image's group (``batch_size`` rows, or the whole batch when that does not divide
    it). As upstream, the context net is not in the optimiser: its weights stay at their
    initialisation (only its batch-norm statistics move), so they are frozen here, which
    changes nothing but skips their useless gradients.
    """

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        if not small_images:
            hp.override("batch_size", 8, lambda r: 8)

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        original_input_shape = tuple(input_shape)
        input_shape = (1 + original_input_shape[0],) + original_input_shape[1:]
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self.context_net = ContextNet(original_input_shape)
        self.context_net.requires_grad_(False)
        self.support_size = hparams["batch_size"]

    def predict(self, x):
        batch_size, _, height, width = x.shape
        if batch_size % self.support_size == 0:
            meta_batch_size, support_size = batch_size // self.support_size, self.support_size
        else:
            meta_batch_size, support_size = 1, batch_size
        context = self.context_net(x).reshape((meta_batch_size, support_size, 1, height, width))
        context = context.mean(dim=1).repeat_interleave(support_size, dim=0)
        return self.network(torch.cat([x, context], dim=1))


@register_algorithm()
class Transfer(Algorithm):
    """Transfer (Zhang et al., 2021, Algorithm 1): ERM plus ``t_lambda`` times the gap
    between the best and worst domain losses of an adversarial head, which is re-set to the
    classifier each step and then trained (``d_steps_per_g`` SGD steps) to widen the gap
    within a ball of radius ``delta`` around the classifier.

    Upstream's quirk kept: with ``gda`` (True in every random draw) ``optimizer`` is SGD over
    the adversarial head only, so the featurizer and classifier never change.
    """

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("t_lambda", 1.0, lambda r: 10 ** r.uniform(-2, 1))
        hp("delta", 2.0, lambda r: r.uniform(0.1, 3.0))
        hp("d_steps_per_g", 10, lambda r: int(r.choice([1, 2, 5])))
        hp("weight_decay_d", 0.0, lambda r: 10 ** r.uniform(-6, -2))
        hp("gda", False, lambda r: True)
        hp("beta1", 0.5, lambda r: r.choice([0.0, 0.5]))
        hp("lr_d", 1e-3, lambda r: 10 ** r.uniform(-4.5, -2.5))

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        nonlinear = hparams.get("nonlinear_classifier", False)
        self.featurizer = networks.Featurizer(input_shape, hparams)
        self.classifier = networks.Classifier(self.featurizer.n_outputs, num_classes, nonlinear)
        self.adv_classifier = networks.Classifier(self.featurizer.n_outputs, num_classes,
                                                  nonlinear)
        self.adv_classifier.load_state_dict(self.classifier.state_dict())
        self.register_buffer("update_count", torch.tensor([0]))
        self.d_steps_per_g = int(hparams["d_steps_per_g"])
        if hparams["gda"]:
            self.optimizer = torch.optim.SGD(self.adv_classifier.parameters(), lr=hparams["lr"])
        else:
            self.optimizer = make_optimizer(
                list(self.featurizer.parameters()) + list(self.classifier.parameters()), hparams)
        self.adv_opt = torch.optim.SGD(self.adv_classifier.parameters(), lr=hparams["lr_d"])

    def loss_gap(self, minibatches, featurizer_grad: bool = True) -> torch.Tensor:
        """Largest minus smallest per-domain loss of the adversarial head (one featurizer
        forward per domain; ``featurizer_grad=False`` keeps the featurizer out of the graph)."""
        losses = []
        for x, y in minibatches:
            with torch.set_grad_enabled(featurizer_grad and torch.is_grad_enabled()):
                z = self.featurizer(x)
            losses.append(F.cross_entropy(self.adv_classifier(z), y))
        return max(losses, key=lambda t: t.item()) - min(losses, key=lambda t: t.item())

    def update(self, minibatches, unlabeled=None):
        x, y = concat_minibatches(minibatches)
        t_lambda = self.hparams["t_lambda"]
        # zero-filled (not None) grads, as upstream's torch 1.12: with gda False, Adam then
        # still moves the classifier by its momentum in the second step
        self.optimizer.zero_grad(set_to_none=False)
        loss = F.cross_entropy(self.predict(x), y)
        loss.backward()
        self.optimizer.step()

        gap = t_lambda * self.loss_gap(minibatches)
        self.optimizer.zero_grad(set_to_none=False)
        gap.backward()
        self.optimizer.step()

        self.adv_classifier.load_state_dict(self.classifier.state_dict())
        for _ in range(self.d_steps_per_g):
            self.adv_opt.zero_grad(set_to_none=False)
            # upstream also back-propagates into the featurizer here; those grads are
            # zeroed before any use, so skipping them changes no number (the forward, with
            # its batch-norm and dropout effects, still runs each time)
            gap = -t_lambda * self.loss_gap(minibatches, featurizer_grad=False)
            gap.backward()
            self.adv_opt.step()
            # back onto the ball of radius delta around the classifier
            proj(self.hparams["delta"], self.adv_classifier, self.classifier)
        return {"loss": loss.item(), "gap": -gap.item()}

    def predict(self, x):
        return self.classifier(self.featurizer(x))
