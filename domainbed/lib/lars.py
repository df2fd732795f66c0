"""LARS: SGD with momentum whose step on each weight matrix is rescaled to a fixed
fraction (``trust_coefficient``) of that matrix's norm (You et al., 2017)."""

import torch


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling, as ERM++ uses it (no lr scaling).

    For a parameter with more than one dimension, ``dp = grad + weight_decay * p`` is
    scaled by ``trust_coefficient * |p| / |dp|`` (1 if either norm is 0); other parameters
    (biases, norm weights) use ``dp = grad``, without decay or scaling. Then
    ``mu = momentum * mu + dp`` and ``p -= lr * mu``.
    """

    def __init__(self, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
                 trust_coefficient: float = 0.001, foreach=None):
        # ``foreach`` is accepted and ignored: upstream's LARS rejects it, so ERM++ with
        # lars=True crashed there; here it works
        if lr < 0:
            raise ValueError(f"LARS: lr={lr} must be >= 0")
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                        trust_coefficient=trust_coefficient)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                dp = p.grad
                if p.ndim > 1:
                    dp = dp.add(p, alpha=group["weight_decay"])
                    param_norm, update_norm = torch.norm(p), torch.norm(dp)
                    one = torch.ones_like(param_norm)
                    trust = torch.where(
                        (param_norm > 0) & (update_norm > 0),
                        group["trust_coefficient"] * param_norm / update_norm, one)
                    dp = dp.mul(trust)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(group["momentum"]).add_(dp)
                p.add_(mu, alpha=-group["lr"])
        return loss
