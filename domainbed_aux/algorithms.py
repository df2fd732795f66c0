"""Target fine-tunings of the ratatouille family, registered in the core's algorithm registry.

``InterTraining``, ``Ratatouille`` and ``Fusing`` train the same way: ERM started (through the
core's ``--init_from``) from a composed init file holding the shared linear probe ``w_lp`` and
a featurizer chosen from the auxiliary pool. When that featurizer is NOT the pretrained one
(member kind != "pretrained", a fused featurizer included), the first ``lp_steps`` updates
train only the classifier, then the optimiser is re-created over all parameters (the paper's
appendix F: "it remains frozen during the first 200 steps to prevent feature distortion").
They differ in how their runs are used afterwards (best run, weight average, fused init).

``LinearProbe`` trains only the classifier on a frozen featurizer, for every step: the shared
linear probe is a run of this algorithm (see ``domainbed_aux.init.probe``).

``LPFT`` is LP-FT (Kumar et al., 2022) by name: ERM over every parameter from the shared
linear probe ``(w_lp, phi_pt)``. The sweep plugin always gives its target jobs that init
(the probe is trained in ``--output_dir_lp``, default ``<output_dir>/linear_probe``);
ERM gets the same init only when the sweep is given ``--output_dir_lp`` or ``--aux_dir``.
"""

import logging
from typing import Optional

import torch
import torch.nn.functional as F

from domainbed.algorithms.base import concat_minibatches, register_algorithm
from domainbed.algorithms.erm import ERM
from domainbed.errors import DomainBedError

# under the core's "domainbed" logger, whose handlers a training run points at its out.txt:
# the frozen-featurizer phase is part of the run's log
log = logging.getLogger("domainbed.algorithms.ratatouille")

DEFAULT_LP_STEPS = 200


def starts_from_auxiliary(init: Optional[dict]) -> bool:
    """True when a run's recorded init featurizer is not the pretrained one (member 0)."""
    if not init:
        return False
    member = init.get("member")
    if not isinstance(member, dict) or "kind" not in member:
        return False  # an init file we did not compose: nothing says where it comes from
    return member["kind"] != "pretrained"


class _FrozenFeaturizerMixin:
    """Helpers to (un)freeze the featurizer with an optimiser that matches."""

    def _set_featurizer_trainable(self, trainable: bool) -> None:
        for p in self.featurizer.parameters():
            p.requires_grad_(trainable)

    def _freeze_featurizer(self) -> None:
        self._set_featurizer_trainable(False)
        self.reset_optimizer(self.classifier.parameters())

    def _unfreeze_featurizer(self) -> None:
        self._set_featurizer_trainable(True)
        self.reset_optimizer(self.network.parameters())


@register_algorithm(init="pool", family="inter")
class InterTraining(_FrozenFeaturizerMixin, ERM):
    """ERM from ``(w_lp, phi_aux_i)``; featurizer frozen for the first ``lp_steps`` updates
    when the init featurizer is an auxiliary (or fused) one."""

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self.update_count = 0
        self.featurizer_frozen = False

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("lp_steps", DEFAULT_LP_STEPS, lambda r: DEFAULT_LP_STEPS)

    def after_init(self, init: Optional[dict]) -> None:
        if starts_from_auxiliary(init) and int(self.hparams["lp_steps"]) > 0:
            self.featurizer_frozen = True
            self._freeze_featurizer()
            log.info("featurizer frozen for the first %d updates (init member: %s)",
                     self.hparams["lp_steps"], init.get("member", {}).get("kind"))

    def update(self, minibatches, unlabeled=None):
        if self.featurizer_frozen and self.update_count >= int(self.hparams["lp_steps"]):
            self.featurizer_frozen = False
            self._unfreeze_featurizer()
            log.info("featurizer unfrozen after %d updates; optimiser over all parameters",
                     self.update_count)
        x, y = concat_minibatches(minibatches)
        loss = F.cross_entropy(self.predict(x), y)
        self.step(loss)
        self.update_count += 1
        return {"loss": loss.item()}

    def extra_state(self) -> dict:
        return {"update_count": self.update_count, "featurizer_frozen": self.featurizer_frozen}

    def load_extra_state(self, state: dict) -> None:
        # runs before the optimiser state is loaded: rebuild the optimiser that was saved
        self.update_count = int(state.get("update_count", 0))
        self.featurizer_frozen = bool(state.get("featurizer_frozen", False))
        if self.featurizer_frozen:
            self._freeze_featurizer()


@register_algorithm(init="pool", family="inter")
class Ratatouille(InterTraining):
    """The runs of model ratatouille: inter-training runs, averaged at report time."""


@register_algorithm(init="fused", family="fusing")
class Fusing(InterTraining):
    """Inter-training from a fused init ``sum_i lambda_i phi_i`` (composed by the sweep)."""


@register_algorithm()
class LinearProbe(_FrozenFeaturizerMixin, ERM):
    """Classifier-only training on a frozen featurizer (every step), in eval mode: batch
    norm normalises with its running statistics, which never change, and dropout is off, as
    for features extracted from the featurizer (the recipe's probes are fitted on those
    directly: ``domainbed_aux.init.probe_fit``)."""

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self._freeze_featurizer()
        self.featurizer.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.featurizer.eval()  # the training loop calls train() before every update
        return self

    def update(self, minibatches, unlabeled=None):
        x, y = concat_minibatches(minibatches)
        with torch.no_grad():
            features = self.featurizer(x)
        loss = F.cross_entropy(self.classifier(features), y)
        self.step(loss)
        return {"loss": loss.item()}


@register_algorithm(init="probe", family="lpft")
class LPFT(ERM):
    """LP-FT: fine-tune every parameter, starting from a linear probe (``--init_from``)."""

    def after_init(self, init: Optional[dict]) -> None:
        super().after_init(init)
        if init is None:
            raise DomainBedError(
                "LPFT fine-tunes from a linear probe: give --init_from the probe's "
                "model.safetensors (a run of --algorithm LinearProbe trains one), or launch "
                "LPFT in a sweep, which trains the probe first (--output_dir_lp DIR, default "
                "<output_dir>/linear_probe)")
