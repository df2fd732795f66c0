"""ERM++ (Teterwak et al., 2023): a linear-probe phase, then full fine-tuning, and
prediction with a simple moving average (SMA) of the weights."""

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from domainbed import networks
from domainbed.algorithms.base import Algorithm, concat_minibatches, register_algorithm
from domainbed.lib.lars import LARS


def _optimizer(params, lr: float, hparams) -> torch.optim.Optimizer:
    kind = LARS if hparams.get("lars", False) else torch.optim.Adam
    return kind(params, lr=lr, weight_decay=hparams["weight_decay"], foreach=False)


@register_algorithm()
class ERMPlusPlus(Algorithm):
    """ERM++: the first ``linear_steps + 1`` updates step only the classifier (with
    ``linear_lr``), the later ones the whole network (with ``lr``); Adam, or LARS with
    ``lars``. ``network_sma`` holds the SMA: a copy of the weights until update
    ``sma_start_iter - 1`` (counted from 1), then their uniform average from that update
    on; ``predict`` always uses it (in eval mode). After each update the SMA runs once in
    train mode on the batch to refresh its batch-norm statistics, unless ``freeze_bn``.

    The live weights are under ``featurizer.*`` / ``classifier.*`` / ``network.*`` and the
    SMA under ``network_sma.*``, as upstream.
    """

    SMA_START_ITER = 600

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("linear_lr", 5e-5, lambda r: 10 ** r.uniform(-5, -3.5))

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self.featurizer = networks.Featurizer(input_shape, hparams)
        self.classifier = networks.Classifier(self.featurizer.n_outputs, num_classes,
                                              hparams.get("nonlinear_classifier", False))
        self.network = nn.Sequential(self.featurizer, self.classifier)
        self.network_sma = copy.deepcopy(self.network)
        self.network_sma.eval()
        self.optimizer = _optimizer(self.network.parameters(), hparams["lr"], hparams)
        self.linear_optimizer = _optimizer(self.network[1].parameters(), hparams["linear_lr"],
                                           hparams)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, "min",
                                                                    patience=1)
        self.linear_steps = int(hparams.get("linear_steps", 500))
        self.freeze_bn = bool(hparams.get("freeze_bn", False))
        self.sma_start_iter = self.SMA_START_ITER
        self.global_iter = 0
        self.sma_count = 0
        self.lr_schedule = []
        self.lr_schedule_changes = 0

    def update(self, minibatches, unlabeled=None):
        x, y = concat_minibatches(minibatches)
        opt = self.optimizer if self.global_iter > self.linear_steps else self.linear_optimizer
        loss = F.cross_entropy(self.network(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        self.update_sma()
        if not self.freeze_bn:
            self.network_sma.train()
            with torch.no_grad():  # only refreshes the SMA's batch-norm statistics
                self.network_sma(x)
        return {"loss": loss.item()}

    @torch.no_grad()
    def update_sma(self) -> None:
        self.global_iter += 1
        live, sma = self.network.state_dict(), self.network_sma.state_dict()
        averaging = self.global_iter >= self.sma_start_iter
        if averaging:
            self.sma_count += 1
        for name, current in live.items():
            if "num_batches_tracked" in name:
                continue
            if averaging:
                # upstream's form, for parity: (sma * count + current) / (1 + count)
                sma[name].copy_((sma[name] * self.sma_count + current) / (1.0 + self.sma_count))
            else:
                sma[name].copy_(current)

    def predict(self, x):
        self.network_sma.eval()
        return self.network_sma(x)

    @torch.no_grad()
    def set_lr(self, eval_loaders_iid=None, schedule=None, device=None):
        """Upstream's ``train_autolr`` hook. Before full fine-tuning, returns ``schedule``.
        Without a schedule, steps the plateau scheduler on the SMA's mean validation loss
        (per loader: mean of batch-mean cross-entropies) and returns the lr history, whose
        last entry is ``[0.0]`` (stop) at the third lr change. With one, sets the lr to its
        first entry and returns the rest."""
        if self.global_iter <= self.linear_steps:
            return schedule
        if schedule is not None:
            # upstream stores a float32 tensor here: keep its rounding
            self.optimizer.param_groups[0]["lr"] = float(
                torch.tensor(schedule[0][0], dtype=torch.float32))
            return schedule[1:]
        self.network_sma.eval()
        losses = []
        for loader in eval_loaders_iid:
            total, n_batches = 0.0, 0
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                total += F.cross_entropy(self.network_sma(x), y).item()
                n_batches += 1
            losses.append(total / n_batches)
        self.scheduler.step(sum(losses) / len(losses))
        self.lr_schedule.append(list(self.scheduler._last_lr))
        if len(self.lr_schedule) > 1 and self.lr_schedule[-1] != self.lr_schedule[-2]:
            self.lr_schedule_changes += 1
        if self.lr_schedule_changes == 3:
            self.lr_schedule[-1] = [0.0]
        return self.lr_schedule

    def extra_state(self) -> dict:
        return {"global_iter": self.global_iter, "sma_count": self.sma_count,
                "lr_schedule": [list(lrs) for lrs in self.lr_schedule],
                "lr_schedule_changes": self.lr_schedule_changes,
                "scheduler": self.scheduler.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.global_iter = int(state["global_iter"])
        self.sma_count = int(state["sma_count"])
        self.lr_schedule = [list(lrs) for lrs in state["lr_schedule"]]
        self.lr_schedule_changes = int(state["lr_schedule_changes"])
        self.scheduler.load_state_dict(state["scheduler"])
