"""Fisher merging (Matena and Raffel, "Merging Models with Fisher-Weighted Averaging",
NeurIPS 2022): each parameter is the average of the members' values weighted by their
diagonal Fisher information, ``theta = sum_i F_i theta_i / sum_i F_i``.

F_i is the diagonal empirical Fisher of member i on training-domain examples (the training
envs' ``in`` splits, never the test domain): the mean over examples of the squared gradient
of ``log p(y | x; theta_i)`` at the true label, one example at a time. ``fisher_floor`` is
added to every F_i, so an entry no example informs is averaged uniformly. Tensors that are
not parameters (buffers) follow the uniform / batch-norm policy."""

import torch

from domainbed_aux.merging.contract import HParam, MergeRule, result
from domainbed_aux.merging.data import collect, device_of, log_likelihood, parameter_keys
from domainbed_aux.merging.registry import register_rule
from domainbed_aux.merging.stream import MemberSet


def empirical_fisher(model: torch.nn.Module, batches) -> dict:
    """``{state key: mean squared per-example gradient of log p(y|x)}`` (aliases included)."""
    keys = parameter_keys(model)
    params = list({id(p): p for p in keys.values()}.values())
    saved = [p.requires_grad for p in params]
    squares = {id(p): torch.zeros_like(p, dtype=torch.float32) for p in params}
    device, n = device_of(model), 0
    try:
        for p in params:
            p.requires_grad_(True)
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            for i in range(len(x)):
                model.zero_grad(set_to_none=True)
                log_likelihood(model, x[i:i + 1], y[i:i + 1]).sum().backward()
                for p in params:
                    if p.grad is not None:
                        squares[id(p)].add_(p.grad.detach().float().square())
                n += 1
    finally:
        for p, flag in zip(params, saved):
            p.requires_grad_(flag)
            p.grad = None
    return {key: squares[id(p)].div_(max(n, 1)).cpu() for key, p in keys.items()}


@register_rule
class FisherMerging(MergeRule):
    name = "fisher"
    title = "Fisher merging"
    source = "Matena and Raffel, Merging Models with Fisher-Weighted Averaging, NeurIPS 2022"
    definition = ("theta = sum_i (F_i + eps) theta_i / sum_i (F_i + eps), F_i the diagonal "
                  "empirical Fisher of member i on training-domain examples")
    needs = frozenset({"train_data"})
    member_statistics = "diagonal empirical Fisher (squared per-example log-likelihood gradients)"
    hparams = (HParam("n_examples", 256, (), "training-domain examples per Fisher"),
               HParam("fisher_floor", 1e-8, (), "eps added to every Fisher entry"))
    passes = 1
    memory = ("weighted sum + Fisher sum + one member, its Fisher and its network "
              "(about 5x one model)")
    order = 20

    def merge(self, inputs, hparams):
        self.check_inputs(inputs)
        ms = MemberSet(inputs)
        floor = float(hparams["fisher_floor"])
        batches = collect(inputs.data.batches(int(hparams["n_examples"])))
        try:
            weighted, total = {}, {}
            for _, _, weights in ms.each():
                ms.add_uniform(weights)
                state = {k: weights.get(k) for k in ms.keys}
                fisher = empirical_fisher(inputs.data.model(state), batches)
                for key in ms.merged:
                    f = fisher.get(key)
                    f = (torch.zeros(ms.layout[key][0]) if f is None else f).to(
                        ms.acc_dtype(key)).add_(floor)
                    theta = ms.theta(weights, key).mul_(f)
                    if key in total:
                        weighted[key].add_(theta)
                        total[key].add_(f)
                    else:
                        weighted[key], total[key] = theta, f
                del state, fisher
            merged = {k: weighted.pop(k).div_(total.pop(k)) for k in ms.merged}
            return result(self, ms.assemble(merged), inputs, hparams,
                          {"n_examples": sum(len(y) for _, y in batches)})
        finally:
            ms.close()
