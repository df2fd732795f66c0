"""URM (Krishnamachari et al.): features pushed towards a uniform distribution by a
discriminator that tells them from uniform noise."""

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from domainbed.algorithms.base import concat_minibatches, register_algorithm
from domainbed.algorithms.erm import ERM

# output activation of the featurizer -> (module, support [a, b) of the uniform noise)
GENERATOR_OUTPUTS = {"tanh": (nn.Tanh, (-1.0, 1.0)), "sigmoid": (nn.Sigmoid, (0.0, 1.0)),
                     "relu": (nn.ReLU, (0.0, 1.0)), "identity": (nn.Identity, None)}


def _discriminator(n_inputs: int, hidden_layers: int) -> nn.Sequential:
    layers = [("dense1", nn.Linear(n_inputs, 100)), ("act1", nn.LeakyReLU())]
    for j in range(hidden_layers):
        layers += [(f"dense{2 + j}", nn.Linear(100, 100)), (f"act2{2 + j}", nn.LeakyReLU())]
    layers.append(("output", nn.Linear(100, 1)))
    return nn.Sequential(OrderedDict(layers))


@register_algorithm()
class URM(ERM):
    """ERM whose features (after the output activation ``urm_generator_output``) must fool
    a discriminator trained to tell them from uniform noise on the activation's range.

    Upstream swaps the featurizer's own ``activation`` attribute; ours adds the activation
    as ``generator_output`` between featurizer and classifier (``network`` = featurizer,
    activation, classifier), so ``featurizer.*`` keys stay those of the backbone.
    """

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("urm", "adversarial", lambda r: str(r.choice(["adversarial"])))  # not read
        hp("urm_adv_lambda", 0.1, lambda r: float(r.uniform(0, 0.2)))
        hp("urm_discriminator_label_smoothing", 0, lambda r: float(r.uniform(0, 0)))
        hp("urm_discriminator_optimizer", "adam", lambda r: str(r.choice(["adam"])))
        hp("urm_discriminator_hidden_layers", 1, lambda r: int(r.choice([1, 2, 3])))
        hp("urm_generator_output", "tanh", lambda r: str(r.choice(["tanh", "relu"])))
        if small_images:
            hp("urm_discriminator_lr", 1e-3, lambda r: 10 ** r.uniform(-5.5, -3.5))
        else:
            hp("urm_discriminator_lr", 5e-5, lambda r: 10 ** r.uniform(-6, -4.5))

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self.discriminator = _discriminator(self.featurizer.n_outputs,
                                            int(hparams["urm_discriminator_hidden_layers"]))
        self.loss = nn.BCEWithLogitsLoss()
        output = hparams["urm_generator_output"]
        if output not in GENERATOR_OUTPUTS or GENERATOR_OUTPUTS[output][1] is None:
            usable = [k for k, (_, support) in GENERATOR_OUTPUTS.items() if support]
            raise ValueError(f"URM: urm_generator_output={output!r} has no bounded range to "
                             f"draw uniform noise from; use one of {usable}")
        activation, self.noise_range = GENERATOR_OUTPUTS[output]
        self.generator_output = activation()
        self.network = nn.Sequential(self.featurizer, self.generator_output, self.classifier)
        kind, lr = hparams["urm_discriminator_optimizer"], hparams["urm_discriminator_lr"]
        params, wd = self.discriminator.parameters(), hparams["weight_decay"]
        if kind == "adam":
            self.discriminator_opt = torch.optim.Adam(params, lr=lr, weight_decay=wd)
        elif kind == "sgd":
            self.discriminator_opt = torch.optim.SGD(params, lr=lr, weight_decay=wd,
                                                     momentum=0.9)
        else:
            raise ValueError(f"URM: urm_discriminator_optimizer={kind!r}; use 'adam' or 'sgd'")

    def features(self, x):
        return self.generator_output(self.featurizer(x))

    def _targets(self, n: int, real: bool, device) -> torch.Tensor:
        """Discriminator targets: 1 (noise) / 0 (features), or uniform on [1-s, 1] / [0, s]
        with label smoothing s."""
        s = float(self.hparams["urm_discriminator_label_smoothing"])
        if s == 0:
            return torch.full((n,), 1.0 if real else 0.0, device=device)
        u = torch.rand(n, device=device) * s
        return 1.0 - u if real else u

    def update(self, minibatches, unlabeled=None):
        x, y = concat_minibatches(minibatches)
        f = self.features(x)
        lam = float(self.hparams["urm_adv_lambda"])
        ce = F.cross_entropy(self.classifier(f), y)
        fooled = self.loss(self.discriminator(f).squeeze(1),
                           torch.ones(len(f), device=f.device))
        loss = ce + lam * fooled
        self.step(loss)

        f = f.detach()
        a, b = self.noise_range
        noise = a + (b - a) * torch.rand(f.shape, device=f.device)
        t_real = self._targets(len(f), True, f.device)  # noise targets drawn first
        t_fake = self._targets(len(f), False, f.device)
        d_loss = self.loss(self.discriminator(noise).squeeze(1), t_real) \
            + lam * self.loss(self.discriminator(f).squeeze(1), t_fake)
        self.discriminator_opt.zero_grad()
        d_loss.backward()
        self.discriminator_opt.step()
        return {"loss": loss.item()}
