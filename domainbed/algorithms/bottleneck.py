"""Information bottleneck (Ahuja et al., 2021): IB_ERM and IB_IRM.

The IB penalty of a domain is the mean over feature dimensions of the features' unbiased
variance over that domain's rows; it is switched on (weight ``ib_lambda``) once the update
counter reaches ``ib_penalty_anneal_iters``.
"""

import torch
import torch.nn.functional as F

from domainbed.algorithms.base import register_algorithm
from domainbed.algorithms.blocks import CountedERM, split_rows
from domainbed.algorithms.penalties import IRM, irm_penalty


def ib_penalty(features: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions of the per-dimension unbiased variance over rows."""
    return features.var(dim=0).mean()


@register_algorithm()
class IB_ERM(CountedERM):
    """ERM plus the information-bottleneck penalty on the features."""

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("ib_lambda", 1e2, lambda r: 10 ** r.uniform(-1, 5))
        hp("ib_penalty_anneal_iters", 500, lambda r: int(10 ** r.uniform(0, 4)))

    def ib_weight(self) -> float:
        if self.count >= self.hparams["ib_penalty_anneal_iters"]:
            return float(self.hparams["ib_lambda"])
        return 0.0

    def domain_terms(self, minibatches):
        """Per domain: (features, logits, labels), from one forward pass over all domains."""
        features = self.featurizer(torch.cat([x for x, _ in minibatches]))
        logits = self.classifier(features)
        return list(zip(split_rows(features, minibatches), split_rows(logits, minibatches),
                        (y for _, y in minibatches)))

    def update(self, minibatches, unlabeled=None):
        w_ib = self.ib_weight()
        nll, ib = 0.0, 0.0
        for features, logits, y in self.domain_terms(minibatches):
            nll = nll + F.cross_entropy(logits, y)
            ib = ib + ib_penalty(features)
        nll, ib = nll / len(minibatches), ib / len(minibatches)
        loss = nll + w_ib * ib
        self.reset_optimizer_at(self.hparams["ib_penalty_anneal_iters"])
        self.step(loss)
        self.update_count += 1
        return {"loss": loss.item(), "nll": nll.item(), "IB_penalty": ib.item()}


@register_algorithm()
class IB_IRM(IB_ERM):
    """IRM (IRMv1 penalty, weight 1 before ``irm_penalty_anneal_iters`` and ``irm_lambda``
    after) plus the information-bottleneck penalty."""

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        IRM.declare_hparams(dataset, hp, small_images)  # irm_lambda, irm_penalty_anneal_iters

    def update(self, minibatches, unlabeled=None):
        w_ib = self.ib_weight()
        w_irm = float(self.hparams["irm_lambda"]) \
            if self.count >= self.hparams["irm_penalty_anneal_iters"] else 1.0
        nll, irm, ib = 0.0, 0.0, 0.0
        for features, logits, y in self.domain_terms(minibatches):
            nll = nll + F.cross_entropy(logits, y)
            irm = irm + irm_penalty(logits, y)
            ib = ib + ib_penalty(features)
        n = len(minibatches)
        nll, irm, ib = nll / n, irm / n, ib / n
        loss = nll + w_irm * irm + w_ib * ib
        self.reset_optimizer_at(self.hparams["irm_penalty_anneal_iters"],
                                self.hparams["ib_penalty_anneal_iters"])
        self.step(loss)
        self.update_count += 1
        return {"loss": loss.item(), "nll": nll.item(), "IRM_penalty": irm.item(),
                "IB_penalty": ib.item()}
