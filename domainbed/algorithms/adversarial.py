"""Domain-adversarial algorithms: DANN, CDANN (conditional DANN) and ADRMX.

Each alternates discriminator and generator steps on ``update_count`` (see
:func:`is_discriminator_step`) with two Adam optimisers of betas ``(beta1, 0.9)``.
"""

from typing import List

import torch
import torch.autograd as autograd
import torch.nn as nn
import torch.nn.functional as F

from domainbed import networks
from domainbed.algorithms.base import Algorithm, concat_minibatches, register_algorithm
from domainbed.algorithms.blocks import domain_labels


def is_discriminator_step(update_count: int, d_steps_per_g_step: int) -> bool:
    """Upstream's schedule, with the counter already increased for this call: ``d``
    discriminator steps, then one generator step (with d=1: G, D, G, D, ...)."""
    return update_count % (1 + d_steps_per_g_step) < d_steps_per_g_step


def _adam(params, lr, weight_decay, beta1) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=(beta1, 0.9))


def _minimise(loss: torch.Tensor, optimizer, *also_zeroed) -> None:
    """Zero ``optimizer`` (and ``also_zeroed``), backpropagate ``loss``, step ``optimizer``."""
    for opt in (*also_zeroed, optimizer):
        opt.zero_grad()
    loss.backward()
    optimizer.step()


class AbstractDANN(Algorithm):
    """Domain-adversarial training; ``CONDITIONAL`` adds class embeddings to the
    discriminator's input and ``CLASS_BALANCE`` re-weights its loss by class frequency."""

    CONDITIONAL = False
    CLASS_BALANCE = False

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("lambda", 1.0, lambda r: 10 ** r.uniform(-2, 2))
        hp("weight_decay_d", 0.0, lambda r: 10 ** r.uniform(-6, -2))
        hp("d_steps_per_g_step", 1, lambda r: int(2 ** r.uniform(0, 3)))
        hp("grad_penalty", 0.0, lambda r: 10 ** r.uniform(-2, 1))
        hp("beta1", 0.5, lambda r: r.choice([0.0, 0.5]))
        # the mlp_* names may already be base hparams (same draws): override keeps one entry
        hp.override("mlp_width", 256, lambda r: int(2 ** r.uniform(6, 10)))
        hp.override("mlp_depth", 3, lambda r: int(r.choice([3, 4, 5])))
        hp.override("mlp_dropout", 0.0, lambda r: r.choice([0.0, 0.1, 0.5]))
        if small_images:
            hp("lr_g", 1e-3, lambda r: 10 ** r.uniform(-4.5, -2.5))
            hp("lr_d", 1e-3, lambda r: 10 ** r.uniform(-4.5, -2.5))
            hp("weight_decay_g", 0.0, lambda r: 0.0)
        else:
            hp("lr_g", 5e-5, lambda r: 10 ** r.uniform(-5, -3.5))
            hp("lr_d", 5e-5, lambda r: 10 ** r.uniform(-5, -3.5))
            hp("weight_decay_g", 0.0, lambda r: 10 ** r.uniform(-6, -2))

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self.register_buffer("update_count", torch.tensor([0]))
        self.featurizer = networks.Featurizer(input_shape, hparams)
        n = self.featurizer.n_outputs
        self.classifier = networks.Classifier(n, num_classes,
                                              hparams.get("nonlinear_classifier", False))
        self.discriminator = networks.MLP(n, num_domains, hparams)
        self.class_embeddings = nn.Embedding(num_classes, n)  # built (and drawn) even for DANN
        self.disc_opt = _adam(list(self.discriminator.parameters())
                              + list(self.class_embeddings.parameters()),
                              hparams["lr_d"], hparams["weight_decay_d"], hparams["beta1"])
        self.gen_opt = _adam(list(self.featurizer.parameters())
                             + list(self.classifier.parameters()),
                             hparams["lr_g"], hparams["weight_decay_g"], hparams["beta1"])

    def discriminator_loss(self, out, d, y) -> torch.Tensor:
        if not self.CLASS_BALANCE:
            return F.cross_entropy(out, d)
        # width max(y)+1 of this batch, not num_classes (upstream)
        counts = F.one_hot(y).sum(0)
        weights = 1.0 / (counts[y] * counts.shape[0]).float()
        return (weights * F.cross_entropy(out, d, reduction="none")).sum()

    def update(self, minibatches, unlabeled=None):
        self.update_count += 1
        x, y = concat_minibatches(minibatches)
        z = self.featurizer(x)
        h = z + self.class_embeddings(y) if self.CONDITIONAL else z
        out = self.discriminator(h)
        d = domain_labels(minibatches)
        disc_loss = self.discriminator_loss(out, d, y)
        summed = F.cross_entropy(out, d, reduction="sum")
        grad = autograd.grad(summed, [h], create_graph=True)[0]
        disc_loss = disc_loss + self.hparams["grad_penalty"] * (grad ** 2).sum(dim=1).mean()

        if is_discriminator_step(int(self.update_count.item()),
                                 int(self.hparams["d_steps_per_g_step"])):
            _minimise(disc_loss, self.disc_opt)
            return {"disc_loss": disc_loss.item()}
        # the generator also pushes the gradient penalty down (upstream)
        gen_loss = F.cross_entropy(self.classifier(z), y) - self.hparams["lambda"] * disc_loss
        _minimise(gen_loss, self.gen_opt, self.disc_opt)
        return {"gen_loss": gen_loss.item()}

    def predict(self, x):
        return self.classifier(self.featurizer(x))


@register_algorithm()
class DANN(AbstractDANN):
    """Domain-adversarial neural network (Ganin et al., 2016)."""


@register_algorithm()
class CDANN(AbstractDANN):
    """Conditional DANN (Li et al., 2018): class-conditional, class-balanced discriminator."""

    CONDITIONAL = True
    CLASS_BALANCE = True


def sup_con_loss_lambda(features, y, d, lamda: float = 0.5,
                        temperature: float = 0.07) -> torch.Tensor:
    """ADRMX's supervised contrastive loss: same-domain pairs weigh ``lamda``, other-domain
    pairs ``1 - lamda``; rows without a positive are left out of the mean."""
    f = F.normalize(features, dim=1)
    similarity = torch.exp(f @ f.t() / temperature)
    same_domain = d[:, None] == d[None, :]
    weight = torch.where(same_domain, torch.full_like(similarity, lamda),
                         torch.full_like(similarity, 1 - lamda))
    not_self = ~torch.eye(len(y), dtype=torch.bool, device=y.device)
    weighted = weight * similarity * not_self
    positive = (y[:, None] == y[None, :]) & not_self
    den = weighted.sum(1, keepdim=True) + 1e-5
    log_ratio = torch.log(weighted / den + 1e-5) * positive
    n_pos = positive.sum(1)
    has_pos = n_pos > 0
    per_row = log_ratio.sum(1)[has_pos] / n_pos[has_pos]
    n_nan = int((~has_pos).sum().item())
    return -per_row.sum() / (len(y) - n_nan + 1)  # "+ 1" as upstream


@register_algorithm()
class ADRMX(Algorithm):
    """Additive disentanglement of domain features with remix loss (Demirel et al., 2023)."""

    MIX_NUM = 1

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("cnt_lambda", 1.0, lambda r: r.choice([1.0]))
        hp("dclf_lambda", 1.0, lambda r: r.choice([1.0]))
        hp("disc_lambda", 0.75, lambda r: r.choice([0.75]))
        hp("rmxd_lambda", 1.0, lambda r: r.choice([1.0]))
        hp("d_steps_per_g_step", 2, lambda r: r.choice([2]))
        hp("beta1", 0.5, lambda r: r.choice([0.5]))
        hp.override("mlp_width", 256, lambda r: r.choice([256]))
        hp.override("mlp_dropout", 0.0, lambda r: r.choice([0]))
        hp.override("mlp_depth", 9, lambda r: int(r.choice([8, 9, 10])))
        if small_images:
            hp.override("lr", 3e-3, lambda r: r.choice([5e-4, 1e-3, 2e-3, 3e-3]))
        else:
            hp.override("lr", 3e-5, lambda r: r.choice([2e-5, 3e-5, 4e-5, 5e-5]))

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self.featurizer_label = networks.Featurizer(input_shape, hparams)
        self.featurizer_domain = networks.Featurizer(input_shape, hparams)
        n = self.featurizer_label.n_outputs
        self.discriminator = networks.MLP(n, num_domains, hparams)
        self.classifier_label_1 = networks.Classifier(n, num_classes, is_nonlinear=True)
        self.classifier_label_2 = networks.Classifier(n, num_classes, is_nonlinear=True)
        self.classifier_domain = networks.Classifier(n, num_domains, is_nonlinear=True)
        self.network = nn.Sequential(self.featurizer_label, self.classifier_label_1)
        self.register_buffer("update_count", torch.tensor([0]))
        lr, beta1 = hparams["lr"], hparams["beta1"]
        self.disc_opt = _adam(self.discriminator.parameters(), lr, 0.0, beta1)
        generator: List[nn.Parameter] = []
        for module in (self.featurizer_label, self.featurizer_domain, self.classifier_label_1,
                       self.classifier_label_2, self.classifier_domain):
            generator += list(module.parameters())
        self.opt = _adam(generator, lr, 0.0, beta1)

    def remix_loss(self, fc, fd, y) -> torch.Tensor:
        """Cross-entropy of label-classifier 1 on class features plus another row's domain
        features, one pair per class, averaged over classes."""
        total = torch.zeros((), device=fc.device)
        for c in range(self.num_classes):
            n_c = int((y == c).sum().item())
            perm = torch.randperm(n_c)
            if n_c < 2:
                continue
            # known upstream bug kept for parity: positions within class c used as batch rows
            i1, i2 = int(perm[0]), int(perm[1])
            mixed = (fc[i1] + fd[i2]).unsqueeze(0)
            total = total + F.cross_entropy(self.classifier_label_1(mixed), y[i1:i1 + 1])
        return total / (self.num_classes * self.MIX_NUM)

    def update(self, minibatches, unlabeled=None):
        self.update_count += 1
        x, y = concat_minibatches(minibatches)
        d = domain_labels(minibatches)
        fl, fd = self.featurizer_label(x), self.featurizer_domain(x)
        fc = fl - fd
        disc_loss = F.cross_entropy(self.discriminator(fc), d)
        if is_discriminator_step(int(self.update_count.item()),
                                 int(self.hparams["d_steps_per_g_step"])):
            _minimise(disc_loss, self.disc_opt)
            return {"loss_disc": disc_loss.item()}

        hp = self.hparams
        loss_dmn = F.cross_entropy(self.classifier_domain(fd), d)
        loss_clf_int = F.cross_entropy(self.classifier_label_1(fl), y)
        loss_cnt_int = sup_con_loss_lambda(fl, y, d)
        loss_clf_fin = F.cross_entropy(self.classifier_label_2(fc), y)
        loss_cnt_final = sup_con_loss_lambda(fc, y, d)
        loss_remixed = self.remix_loss(fc, fd, y)
        total = (loss_clf_int + loss_clf_fin + hp["dclf_lambda"] * loss_dmn
                 + hp["rmxd_lambda"] * loss_remixed
                 + hp["cnt_lambda"] * (loss_cnt_int + loss_cnt_final)
                 - hp["disc_lambda"] * disc_loss)
        _minimise(total, self.opt, self.disc_opt)
        return {"loss_total": total.item(), "loss_cnt_int": loss_cnt_int.item(),
                "loss_cnt_final": loss_cnt_final.item(), "loss_clf_int": loss_clf_int.item(),
                "loss_clf_fin": loss_clf_fin.item(), "loss_dmn": loss_dmn.item(),
                "loss_disc": disc_loss.item(), "loss_remixed": loss_remixed.item()}

    def predict(self, x):
        return self.network(x)
