"""Algorithms on the distribution of the per-domain risks: EQRM (a quantile of it, Eastwood
et al.) and RDM (match the worst domain's loss distribution to the pooled one, Nguyen et
al.)."""

import torch
import torch.nn.functional as F

from domainbed.algorithms.base import register_algorithm
from domainbed.algorithms.blocks import CountedERM, split_rows
from domainbed.algorithms.mixing import gaussian_mmd

RDM_GAMMAS = (0.0001, 0.001, 0.01, 0.1, 1, 10, 100, 1000)


class KDEQuantile:
    """Quantiles of the distribution of a few values, smoothed by a Gaussian kernel density
    estimate (EQRM's ``Nonparametric`` with ``use_kde`` and Gauss-optimal bandwidth)."""

    N_BISECTIONS = 32

    def __init__(self):
        self.data = None
        self.bandwidth = None
        self.normal = torch.distributions.Normal(0, 1)

    def estimate_parameters(self, values: torch.Tensor) -> None:
        self.data = torch.sort(values)[0]  # differentiable sort
        n = len(self.data)
        self.bandwidth = 1.06 * self.data.std() * n ** (-1 / 5)

    def cdf(self, t: torch.Tensor) -> torch.Tensor:
        return self.normal.cdf((t - self.data) / self.bandwidth).mean()

    def icdf(self, q: torch.Tensor) -> torch.Tensor:
        """The ``q`` quantile by bisection on the smoothed CDF. The result is a dyadic mix
        of its two brackets, so gradients reach the smallest and largest values and the
        bandwidth only."""
        shift = self.bandwidth * self.normal.icdf(q)
        lo, hi = self.data[0] + shift, self.data[-1] + shift
        k = (lo + hi) / 2
        for _ in range(self.N_BISECTIONS):
            if self.cdf(k) > q:
                hi = k
            else:
                lo = k
            new_k = (lo + hi) / 2
            if new_k == k:
                break
            k = new_k
        return k


@register_algorithm()
class EQRM(CountedERM):
    """Empirical quantile risk minimisation: minimise the ``eqrm_quantile`` quantile of the
    per-domain risks (a KDE quantile) after ``eqrm_burnin_iters`` steps of ERM (the mean
    risk); when the counter equals the burn-in, Adam is re-created with ``eqrm_lr``. A
    random burn-in is a float (upstream's draw), so that reset then never fires."""

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("eqrm_quantile", 0.75, lambda r: r.uniform(0.5, 0.99))
        hp("eqrm_burnin_iters", 2500, lambda r: 10 ** r.uniform(2.5, 3.5))
        hp("eqrm_lr", 1e-6, lambda r: 10 ** r.uniform(-7, -5))

    def __init__(self, input_shape, num_classes, num_domains, hparams, dist=None):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self.register_buffer("alpha", torch.tensor(hparams["eqrm_quantile"],
                                                   dtype=torch.float64))
        self.dist = KDEQuantile() if dist is None else dist

    def risk_quantile(self, risks: torch.Tensor) -> torch.Tensor:
        self.dist.estimate_parameters(risks)
        return self.dist.icdf(self.alpha)

    def update(self, minibatches, unlabeled=None):
        risks = torch.cat([F.cross_entropy(self.network(x), y).reshape(1)
                           for x, y in minibatches])
        burnin = self.hparams["eqrm_burnin_iters"]
        loss = risks.mean() if self.count < burnin else self.risk_quantile(risks)
        self.reset_optimizer_at(burnin, lr=self.hparams["eqrm_lr"])
        self.step(loss)
        self.update_count += 1
        return {"loss": loss.item()}


@register_algorithm()
class RDM(CountedERM):
    """Risk distribution matching: ERM plus, once the counter reaches
    ``rdm_penalty_anneal_iters``, ``rdm_lambda`` times the MMD between the per-row losses
    of the worst domain and those of all domains, and ``variance_weight`` times the sum of
    their unbiased variances; at that step Adam is re-created with ``rdm_lr``."""

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        if dataset == "DomainNet":
            hp("rdm_lambda", 0.5, lambda r: r.uniform(0.1, 1.0))
            hp("rdm_penalty_anneal_iters", 2400, lambda r: int(r.uniform(1500, 3000)))
        else:
            if dataset in ("PACS", "TerraIncognita"):
                hp("rdm_lambda", 5.0, lambda r: r.uniform(1.0, 10.0))
            else:
                hp("rdm_lambda", 5.0, lambda r: r.uniform(0.1, 10.0))
            hp("rdm_penalty_anneal_iters", 1500, lambda r: int(r.uniform(800, 2700)))
        if dataset in ("TerraIncognita", "OfficeHome", "DomainNet"):
            hp("variance_weight", 0.0, lambda r: r.choice([0.0]))
        else:
            hp("variance_weight", 0.004, lambda r: r.uniform(0.001, 0.007))
        hp("rdm_lr", 1.5e-5, lambda r: r.uniform(8e-6, 2e-5))
        if not small_images:
            if dataset in ("DomainNet", "TerraIncognita"):
                hp.override("batch_size", 40, lambda r: int(r.uniform(30, 60)))
            else:
                hp.override("batch_size", 88, lambda r: int(r.uniform(70, 100)))

    def penalties(self, minibatches):
        """(mean risk, matching penalty, variance penalty) of one forward pass."""
        sizes = {len(x) for x, _ in minibatches}
        if len(sizes) != 1:
            raise ValueError(f"RDM needs equal batch sizes in every domain, got "
                             f"{[len(x) for x, _ in minibatches]}; use full batches")
        logits = self.predict(torch.cat([x for x, _ in minibatches]))
        row_losses = torch.stack([F.cross_entropy(env_logits, y, reduction="none")
                                  for env_logits, (_, y) in
                                  zip(split_rows(logits, minibatches), minibatches)])
        losses = torch.stack([F.cross_entropy(env_logits, y) for env_logits, (_, y) in
                              zip(split_rows(logits, minibatches), minibatches)])
        worst = row_losses[torch.argmax(losses)]
        pooled = row_losses.flatten()
        matching = gaussian_mmd(worst.unsqueeze(1), pooled.unsqueeze(1), RDM_GAMMAS)
        variance = torch.var(pooled) + torch.var(worst)
        return losses.mean(), matching, variance

    def update(self, minibatches, unlabeled=None, held_out_minibatches=None):
        anneal = self.hparams["rdm_penalty_anneal_iters"]
        on = self.count >= anneal
        w_match = float(self.hparams["rdm_lambda"]) if on else 0.0
        w_var = float(self.hparams["variance_weight"]) if on else 0.0
        erm, matching, variance = self.penalties(minibatches)
        total = erm + w_match * matching + w_var * variance
        self.reset_optimizer_at(anneal, lr=self.hparams["rdm_lr"])
        self.step(total)
        self.update_count += 1
        return {"update_count": float(self.count), "total_loss": total.item(),
                "erm_loss": erm.item(), "matching_penalty": matching.item(),
                "variance_penalty": variance.item(),
                "rdm_lambda": float(self.hparams["rdm_lambda"])}
