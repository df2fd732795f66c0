"""TRM (Xu & Jaakkola, 2021): representations whose per-domain predictors transfer.

Each training domain has its own linear head (plus one spare, as upstream), fitted by SGD on
the detached features; the featurizer is then trained so that each domain's head also fits
the other domains and its gradient agrees with theirs (through a Neumann-series inverse
Hessian). The heads and the domain weights ``alpha`` are not part of the model's state dict
(as upstream) but go through ``extra_state`` so that a resumed run continues exactly.
"""

import math

import torch
import torch.autograd as autograd
import torch.nn as nn
import torch.nn.functional as F

from domainbed import networks
from domainbed.algorithms.base import Algorithm, concat_minibatches, make_optimizer, \
    register_algorithm

N_HEAD_STEPS = 30
N_NEUMANN_TERMS = 10


def neumann_inverse_hvp(v: torch.Tensor, head: nn.Linear, z: torch.Tensor,
                        y: torch.Tensor) -> torch.Tensor:
    """Upstream's truncated Neumann approximation of H^-1 v, H the Hessian of
    ``CE(head(z), y)`` in ``head.weight``: ``(I-H)v + sum_k (I-H)^k v`` (k = 1..n, at most
    10 terms, stopping once an entry of the sum exceeds 10 in magnitude)."""
    v = v.detach()
    h = v  # the same tensor: the in-place update below also changes h once (upstream)
    loss = F.cross_entropy(head(z.detach()), y)
    grad = autograd.grad(loss, head.weight, create_graph=True)[0].flatten()
    for _ in range(N_NEUMANN_TERMS):
        hv = autograd.grad(grad @ v, head.weight, retain_graph=True)[0].flatten()
        v -= hv
        h = v + h
        if h.abs().max() > 10:
            break
    return h.detach()


@register_algorithm()
class TRM(Algorithm):
    """Transfer risk minimisation; ERM for the first ``iters`` updates."""

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("cos_lambda", 1e-4, lambda r: 10 ** r.uniform(-5, 0))
        hp("iters", 200, lambda r: int(10 ** r.uniform(0, 4)))
        hp("groupdro_eta", 1e-2, lambda r: 10 ** r.uniform(-3, -1))

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        if num_domains < 2:
            raise ValueError(f"TRM needs at least 2 training domains, got {num_domains}; "
                             "leave out fewer test environments or use another algorithm")
        self.featurizer = networks.Featurizer(input_shape, hparams)
        n = self.featurizer.n_outputs
        self.classifier = nn.Linear(n, num_classes)  # always linear, as upstream
        # plain list, not registered (as upstream); checkpointed through extra_state
        self.clist = [nn.Linear(n, num_classes) for _ in range(num_domains + 1)]
        self.alpha = torch.ones(num_domains, num_domains) - torch.eye(num_domains)
        self.register_buffer("update_count", torch.tensor([0]))
        self.olist = [torch.optim.SGD(head.parameters(), lr=1e-1) for head in self.clist]
        self.optimizer_f = make_optimizer(self.featurizer.parameters(), hparams)
        self.optimizer_c = make_optimizer(self.classifier.parameters(), hparams)

    def optimizers(self):
        found = super().optimizers()
        found.update({f"olist.{i}": opt for i, opt in enumerate(self.olist)})
        return found

    def _heads_to(self, device) -> None:
        if self.alpha.device != device:  # .to() on the algorithm does not reach the list
            for head in self.clist:
                head.to(device)  # keeps the Parameter objects, so olist stays valid
            self.alpha = self.alpha.to(device)

    def fit_heads(self, zs, ys) -> None:
        """30 SGD steps of every domain's head on its detached features."""
        for _ in range(N_HEAD_STEPS):
            loss = sum(F.cross_entropy(self.clist[j](z.detach()), y)
                       for j, (z, y) in enumerate(zip(zs, ys)))
            for opt in self.olist:
                opt.zero_grad()
            loss.backward()
            for opt in self.olist:
                opt.step()

    def swap_loss(self, zs, ys) -> torch.Tensor:
        """Mean over domains Q of: head Q's alpha-weighted loss on the other domains minus
        ``cos_lambda`` times the alignment of its own gradient with theirs (H^-1-weighted);
        ``alpha`` then grows on the domains head Q fits worst."""
        n_domains = len(zs)
        eta = self.hparams["groupdro_eta"]
        total = 0.0
        for q in range(n_domains):
            head = self.clist[q]
            own = F.cross_entropy(head(zs[q]), ys[q])
            grad_own = autograd.grad(own, head.weight, create_graph=True)[0].flatten()
            others = {i: F.cross_entropy(head(zs[i]), ys[i]) * float(self.alpha[q, i])
                      for i in range(n_domains) if i != q}
            swapped = sum(others.values())
            grad_others = autograd.grad(swapped, head.weight,
                                        retain_graph=True)[0].flatten().detach()
            inverse = neumann_inverse_hvp(grad_others, head, zs[q], ys[q])
            total = total + swapped - self.hparams["cos_lambda"] * (inverse @ grad_own)
            for i, loss in others.items():  # the exponent uses the weighted loss (upstream)
                self.alpha[q, i] *= math.exp(eta * loss.item())
        return total / n_domains

    def update(self, minibatches, unlabeled=None):
        self._heads_to(minibatches[0][0].device)
        x, y = concat_minibatches(minibatches)
        trm_branch = self.update_count.item() >= self.hparams["iters"]
        if trm_branch:
            if self.hparams.get("class_balanced", False):
                with torch.no_grad():
                    for head in self.clist:
                        head.weight.copy_(self.classifier.weight)
            self.alpha /= self.alpha.sum(1, keepdim=True)
        self.featurizer.train()
        z = self.featurizer(x)
        loss = F.cross_entropy(self.classifier(z), y)
        total = loss
        if trm_branch:
            sizes = [len(t) for _, t in minibatches]
            zs, ys = z.split(sizes), [t for _, t in minibatches]
            self.fit_heads(zs, ys)
            total = loss + self.swap_loss(zs, ys)
        nll = loss.item()
        self.optimizer_c.zero_grad()
        self.optimizer_f.zero_grad()
        total.backward()
        self.optimizer_f.step()
        self.optimizer_c.step()
        self.update_count += 1
        return {"nll": nll, "trm_loss": total.item() - nll}

    def predict(self, x):
        return self.classifier(self.featurizer(x))

    def extra_state(self) -> dict:
        return {"clist": [head.state_dict() for head in self.clist], "alpha": self.alpha}

    def load_extra_state(self, state: dict) -> None:
        for head, head_state in zip(self.clist, state["clist"]):
            head.load_state_dict(head_state)
        self.alpha = state["alpha"].to(self.alpha.device).clone()
