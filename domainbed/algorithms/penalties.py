"""Invariance penalties added to ERM: IRM, VREx (with warm-up annealing), GroupDRO."""

import torch
import torch.autograd as autograd
import torch.nn.functional as F

from domainbed.algorithms.base import register_algorithm
from domainbed.algorithms.erm import ERM


def irm_penalty(logits, y):
    """IRMv1: product of the gradients, w.r.t. a unit logit scale, of the losses on the
    even and the odd rows (an unbiased estimate of the squared gradient)."""
    scale = torch.tensor(1.0, device=logits.device, requires_grad=True)
    loss_1 = F.cross_entropy(logits[::2] * scale, y[::2])
    loss_2 = F.cross_entropy(logits[1::2] * scale, y[1::2])
    grad_1 = autograd.grad(loss_1, [scale], create_graph=True)[0]
    grad_2 = autograd.grad(loss_2, [scale], create_graph=True)[0]
    return torch.sum(grad_1 * grad_2)


class _AnnealedPenalty(ERM):
    """ERM plus ``weight * penalty``; the weight is 1 during warm-up, then ``LAMBDA``.

    The optimiser is re-created when the full weight switches on (upstream's behaviour),
    because Adam's moments were fitted to a much smaller loss scale.
    """

    LAMBDA = ""
    ANNEAL = ""

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self.register_buffer("update_count", torch.tensor([0]))

    def penalty_weight(self) -> float:
        if self.update_count.item() >= self.hparams[self.ANNEAL]:
            return float(self.hparams[self.LAMBDA])
        return 1.0

    def losses_and_penalty(self, minibatches):
        raise NotImplementedError

    def per_domain_logits(self, minibatches):
        """One forward pass over all domains, split back into ``(logits, y)`` per domain."""
        logits = self.network(torch.cat([x for x, _ in minibatches]))
        sizes = [len(y) for _, y in minibatches]
        return list(zip(logits.split(sizes), (y for _, y in minibatches)))

    def update(self, minibatches, unlabeled=None):
        weight = self.penalty_weight()
        nll, penalty = self.losses_and_penalty(minibatches)
        loss = nll + weight * penalty
        if self.update_count.item() == self.hparams[self.ANNEAL]:
            self.reset_optimizer()
        self.step(loss)
        self.update_count += 1
        return {"loss": loss.item(), "nll": nll.item(), "penalty": penalty.item()}


@register_algorithm()
class IRM(_AnnealedPenalty):
    """Invariant risk minimisation (IRMv1 penalty)."""

    LAMBDA, ANNEAL = "irm_lambda", "irm_penalty_anneal_iters"

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("irm_lambda", 1e2, lambda r: 10 ** r.uniform(-1, 5))
        hp("irm_penalty_anneal_iters", 500, lambda r: int(10 ** r.uniform(0, 4)))

    def losses_and_penalty(self, minibatches):
        nll, penalty = 0.0, 0.0
        for env_logits, y in self.per_domain_logits(minibatches):
            nll = nll + F.cross_entropy(env_logits, y)
            penalty = penalty + irm_penalty(env_logits, y)
        return nll / len(minibatches), penalty / len(minibatches)


@register_algorithm()
class VREx(_AnnealedPenalty):
    """Risk extrapolation: penalise the variance of the per-domain risks."""

    LAMBDA, ANNEAL = "vrex_lambda", "vrex_penalty_anneal_iters"

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("vrex_lambda", 1e1, lambda r: 10 ** r.uniform(-1, 5))
        hp("vrex_penalty_anneal_iters", 500, lambda r: int(10 ** r.uniform(0, 4)))

    def losses_and_penalty(self, minibatches):
        losses = torch.stack([F.cross_entropy(env_logits, y)
                              for env_logits, y in self.per_domain_logits(minibatches)])
        mean = losses.mean()
        return mean, ((losses - mean) ** 2).mean()


@register_algorithm()
class GroupDRO(ERM):
    """Group distributionally robust optimisation: up-weight the worst domains online."""

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("groupdro_eta", 1e-2, lambda r: 10 ** r.uniform(-3, -1))

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self.register_buffer("q", torch.ones(num_domains))

    def update(self, minibatches, unlabeled=None):
        if len(self.q) != len(minibatches):  # the buffer follows the number of train domains
            self.q = torch.ones(len(minibatches), device=self.q.device)
        losses = torch.stack([F.cross_entropy(self.predict(x), y) for x, y in minibatches])
        with torch.no_grad():
            self.q *= torch.exp(self.hparams["groupdro_eta"] * losses.detach())
            self.q /= self.q.sum()
        loss = torch.dot(losses, self.q)
        self.step(loss)
        return {"loss": loss.item()}
