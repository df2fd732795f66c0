"""Fitting the linear probe ``w_lp`` on features extracted once from the frozen ``phi_pt``.

The paper fits its probes "with default hyperparameters ... and features extracted from the
ImageNet pre-trained featurizer" (appendix F): the featurizer is frozen and in eval mode
(batch norm uses its running statistics, as in every run the probe initialises; no
dropout), so each image's features are a fixed vector and are computed once, from the
un-augmented images of the training environments' ``in`` and ``out`` splits. The classifier
is then trained on them as the training loop would train it (the run's hparams and
optimiser, ``batch_size`` examples per training environment drawn with replacement, an
evaluation every ``checkpoint_freq`` steps and at the last one), for a fraction of the
cost: a step no longer runs the featurizer, so a probe trained to a plateau is cheap.

The run directory gets the loop's files that readers use: ``results.jsonl`` (one record per
evaluation: step, epoch, loss, ``env{j}_out_acc`` of the training envs, ``args``,
``hparams``, ``features: "extracted once"``) and ``done``, written when the fit ends. A fit
is a pure function of its config and ``phi_pt``: an interrupted one simply runs again.
"""

import copy
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from domainbed.lib import run_dir as rd
from domainbed.lib.atomic import atomic_write_text
from domainbed.lib import misc
from domainbed.lib.fast_data_loader import eval_loader
from domainbed.training.config import TrainConfig

log = logging.getLogger(__name__)

FEATURE_BATCH = 256


@dataclass
class ProbeFit:
    """The classifier state of the best ID-validation evaluation and its record."""

    classifier: Dict[str, torch.Tensor]
    best_record: Dict[str, Any]
    records: List[Dict[str, Any]]


@torch.no_grad()
def extract_features(featurizer: torch.nn.Module, split, device, n_workers: int
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(features, labels) of every example of ``split``, in order, with ``featurizer`` in
    eval mode."""
    featurizer.eval()
    feats, labels = [], []
    for x, y in eval_loader(split, FEATURE_BATCH, n_workers):
        feats.append(featurizer(x.to(device)).float())
        labels.append(y.to(device))
    if not feats:
        raise ValueError("empty split")
    return torch.cat(feats), torch.cat(labels)


def _draw_indices(n: int, batch_size: int, n_steps: int, seed: int, env: int,
                  weights: Optional[torch.Tensor]) -> torch.Tensor:
    """(n_steps, batch_size) example indices of one environment, drawn with replacement
    (with ``weights``: by those sampling weights) from a generator of its own."""
    generator = torch.Generator().manual_seed(misc.seed_hash(seed, "linear_probe", env))
    if weights is None:
        return torch.randint(n, (n_steps, batch_size), generator=generator)
    return torch.multinomial(weights, n_steps * batch_size, replacement=True,
                             generator=generator).view(n_steps, batch_size)


class _TorchStep:
    """One optimiser step of ``module`` on (x, y) by autograd; returns the loss."""

    def __init__(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer):
        self.module, self.optimizer = module, optimizer

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> float:
        loss = F.cross_entropy(self.module(x), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()


class LinearHeadAdam:
    """Adam with L2 weight decay (torch's ``Adam`` formula, default betas and eps) on a
    linear head's cross-entropy, with the gradient written out: a few small tensor
    operations per step instead of autograd's and the optimiser's bookkeeping, which
    dominate on a head this small (tens of thousands of steps then take seconds)."""

    BETAS = (0.9, 0.999)
    EPS = 1e-8

    def __init__(self, linear: torch.nn.Linear, hparams: Dict[str, Any]):
        self.params = [linear.weight.data, linear.bias.data]
        self.lr, self.weight_decay = float(hparams["lr"]), float(hparams["weight_decay"])
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> float:
        weight, bias = self.params
        logits = torch.addmm(bias, x, weight.t())
        log_p = logits.log_softmax(1)
        rows = torch.arange(len(y), device=y.device)
        loss = -log_p[rows, y].mean()
        g_logits = log_p.exp_()
        g_logits[rows, y] -= 1.0
        g_logits /= len(y)
        grads = [g_logits.t() @ x, g_logits.sum(0)]
        self.t += 1
        b1, b2 = self.BETAS
        step_size = self.lr / (1 - b1 ** self.t)
        bias2 = (1 - b2 ** self.t) ** 0.5
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            if self.weight_decay:
                g = g.add(p, alpha=self.weight_decay)
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.addcdiv_(m, v.sqrt().div_(bias2).add_(self.EPS), value=-step_size)
        return loss.item()


def _accuracy(classifier: torch.nn.Module, feats: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (classifier(feats).argmax(1) == labels).float().mean().item()


def fit_probe(config: TrainConfig, phi_pt: Dict[str, torch.Tensor]) -> ProbeFit:
    """Fit the classifier of ``config``'s run (algorithm ``LinearProbe``) on the features of
    ``phi_pt``; writes ``results.jsonl`` and ``done`` into ``config.output_dir``."""
    from domainbed.algorithms.base import make_optimizer
    from domainbed.training.setup import prepare_run
    setup = prepare_run(config)
    algorithm, splits, device = setup.algorithm, setup.splits, setup.device
    algorithm.featurizer.load_state_dict(phi_pt, strict=True)
    for p in algorithm.featurizer.parameters():
        p.requires_grad_(False)
    dataset = setup.dataset
    n_workers = min(dataset.N_WORKERS, config.num_workers if config.num_workers is not None
                    else dataset.N_WORKERS)
    n_steps = config.steps if config.steps is not None else dataset.N_STEPS
    freq = config.checkpoint_freq or dataset.CHECKPOINT_FREQ
    batch_size = int(setup.hparams["batch_size"])
    started = time.monotonic()
    train_in, val = [], []
    for j in setup.train_envs:
        train_in.append(extract_features(algorithm.featurizer, splits.eval_in[j], device,
                                          n_workers))
        val.append(extract_features(algorithm.featurizer, splits.eval_out[j], device,
                                    n_workers))
    log.info("linear probe: features of %d training envs extracted once (%.1f s)",
             len(setup.train_envs), time.monotonic() - started)
    draws = [_draw_indices(len(feats), batch_size, n_steps, config.seed, j,
                           splits.in_splits[j][1])
             for (feats, _), j in zip(train_in, setup.train_envs)]
    classifier = algorithm.classifier
    classifier.train()
    stepper = (LinearHeadAdam(classifier, setup.hparams)
               if isinstance(classifier, torch.nn.Linear)
               else _TorchStep(classifier, make_optimizer(classifier.parameters(), setup.hparams)))
    steps_per_epoch = min(len(feats) / batch_size for feats, _ in train_in)
    records: List[Dict[str, Any]] = []
    best: Optional[Tuple[float, Dict[str, torch.Tensor], Dict[str, Any]]] = None
    losses: List[float] = []
    tick = time.monotonic()
    for step in range(n_steps):
        x = torch.cat([feats[d[step]] for d, (feats, _) in zip(draws, train_in)])
        y = torch.cat([labels[d[step]] for d, (_, labels) in zip(draws, train_in)])
        losses.append(stepper(x, y))
        if step % freq == 0 or step == n_steps - 1:
            record: Dict[str, Any] = {"step": step, "epoch": step / steps_per_epoch,
                                      "loss": sum(losses) / len(losses)}
            accs = [_accuracy(classifier, f, y) for f, y in val]
            for i in range(len(dataset)):
                record[f"env{i}_in_acc"] = None
                record[f"env{i}_out_acc"] = None
            for j, acc in zip(setup.train_envs, accs):
                record[f"env{j}_out_acc"] = acc
            now = time.monotonic()
            record.update({"step_time": (now - tick) / len(losses), "features": "extracted once",
                           "hparams": setup.hparams, "args": setup.args_record})
            tick, losses = now, []
            records.append(record)
            id_val = sum(accs) / len(accs)
            if best is None or id_val > best[0]:  # ties keep the earlier, as model_best
                best = (id_val, copy.deepcopy(classifier.state_dict()), record)
    os.makedirs(config.output_dir, exist_ok=True)
    atomic_write_text(os.path.join(config.output_dir, rd.RESULTS),
                      "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    atomic_write_text(os.path.join(config.output_dir, rd.DONE), "done\n")
    assert best is not None
    log.info("linear probe: %d steps in %.1f s; best ID validation %.1f%% at step %d",
             n_steps, time.monotonic() - started, 100 * best[0], best[2]["step"])
    return ProbeFit({k: v.detach().cpu().clone() for k, v in best[1].items()}, best[2],
                    records)
