"""Spherical interpolation of task vectors (Shoemake, "Animating rotation with quaternion
curves", SIGGRAPH 1985), per tensor, and its form for M members: the weighted spherical mean
in the tangent space (Buss and Fillmore, "Spherical averages and applications to spherical
splines and interpolation", ACM TOG 2001).

``slerp`` merges two members a and b (of more, the two with the best ID-validation
accuracy, a the best): per tensor, with Omega the angle between tau_a and tau_b,
``tau = sin((1 - t) Omega) / sin(Omega) tau_a + sin(t Omega) / sin(Omega) tau_b`` (linear
interpolation when sin(Omega) < 1e-6, parallel or opposite task vectors, or when a task
vector is zero), ``theta = theta_0 + tau``.

``slerp_tangent`` merges M members: per tensor, the direction is the spherical (Karcher)
mean of the unit task vectors, found by averaging their log maps at the current estimate
and mapping back with the exp map until the step is below 1e-6 (start: the normalised
Euclidean mean); its length the mean of the task vectors' norms;
``theta = theta_0 + length * direction``. Zero task vectors count in the length, not in the
direction. For two members of equal norm it is ``slerp`` at t = 0.5."""

import math
from dataclasses import replace

import torch

from domainbed_aux.averaging.base import AveragingError
from domainbed_aux.merging.contract import HParam, MergeRule, result
from domainbed_aux.merging.registry import register_rule
from domainbed_aux.merging.stream import MemberSet

TOLERANCE = 1e-6  # directions are stored in float32
PARALLEL = 1e-6   # sin(Omega) below it: the task vectors are parallel or opposite
MAX_STEPS = 50


def slerp_tensors(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Shoemake's interpolation of two tensors (float64 norms and angle; the combination in
    the tensors' dtype, so a tensor needs no float64 copy)."""
    a64, b64 = a.double().reshape(-1), b.double().reshape(-1)  # exact products, then freed
    na, nb, dot = float(a64.norm()), float(b64.norm()), float(a64 @ b64)
    del a64, b64
    if na == 0 or nb == 0:
        return a.mul(1 - t).add_(b, alpha=t)
    omega = math.acos(min(max(dot / (na * nb), -1.0), 1.0))
    if math.sin(omega) < PARALLEL:  # (anti)parallel: the formula's weights blow up
        return a.mul(1 - t).add_(b, alpha=t)
    s = math.sin(omega)
    return a.mul(math.sin((1 - t) * omega) / s).add_(b, alpha=math.sin(t * omega) / s)


@register_rule
class Slerp(MergeRule):
    name = "slerp"
    title = "SLERP"
    source = "Shoemake, Animating rotation with quaternion curves, SIGGRAPH 1985"
    definition = ("two members a, b (the best two on ID validation): per tensor, "
                  "theta = theta_0 + slerp(tau_a, tau_b; t)")
    needs = frozenset({"theta_0", "member_val_acc"})
    hparams = (HParam("t", 0.5, (0.1, 0.3, 0.5, 0.7, 0.9), "position from a (0) to b (1)"),)
    passes = 1
    memory = "the result + two tensors (1x one model)"
    min_members = 2
    order = 15

    def check_inputs(self, inputs):
        if len(inputs.members) == 2 and inputs.val_acc_of_member is None:
            # two members need no ranking: a is the first given
            inputs = replace(inputs, val_acc_of_member={m: 0.0 for m, _ in inputs.members})
        super().check_inputs(inputs)

    def pair(self, inputs):
        if len(inputs.members) == 2 and inputs.val_acc_of_member is None:
            return list(inputs.members)
        return inputs.ranked()[:2]

    def merge(self, inputs, hparams):
        self.check_inputs(inputs)
        pair = self.pair(inputs)
        ms = MemberSet(inputs.with_members(pair), with_base=True)
        t = float(hparams["t"])
        try:
            a, b = ms.open(0), ms.open(1)
            try:
                ms.add_uniform(a)
                ms.add_uniform(b)
                merged = {}
                for key in ms.merged:
                    tau = slerp_tensors(ms.tau(a, key), ms.tau(b, key), t)
                    merged[key] = tau.add_(ms.base_of(key))
            finally:
                a.close()
                b.close()
            return result(self, ms.assemble(merged), inputs, hparams,
                          members=[m for m, _ in pair])
        finally:
            ms.close()


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.sum(a * b, dtype=torch.float64))


def _log(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The log map of the unit sphere at p (1-D tensors; the angle in float64)."""
    cos = min(max(_dot(p, x), -1.0), 1.0)
    angle = math.acos(cos)
    if angle < 1e-15:
        return torch.zeros_like(p)
    if math.pi - angle < 1e-12:
        raise AveragingError("two task vectors point in opposite directions: their spherical "
                             "mean is undefined")
    return x.sub(p, alpha=cos).mul_(angle / math.sin(angle))


def _exp(p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    norm = math.sqrt(max(_dot(v, v), 0.0))
    if norm < 1e-300:
        return p
    out = p.mul(math.cos(norm)).add_(v, alpha=math.sin(norm) / norm)
    return out.div_(math.sqrt(_dot(out, out)))


@register_rule
class SlerpTangent(MergeRule):
    name = "slerp_tangent"
    title = "SLERP (tangent space)"
    source = ("Buss and Fillmore, Spherical averages and applications to spherical splines "
              "and interpolation, ACM TOG 2001 (the M-member form of Shoemake's SLERP)")
    definition = ("per tensor: theta = theta_0 + mean_i |tau_i| * (spherical mean of "
                  "tau_i / |tau_i|), by log and exp maps")
    needs = frozenset({"theta_0"})
    passes = 0  # 1 + the number of steps (every step reads the members once)
    memory = "the current mean direction + the tangent sum + one tensor (2x one model)"
    order = 16

    def merge(self, inputs, hparams):
        ms = MemberSet(inputs, with_base=True)
        try:
            n = len(ms)
            direction, norms, counts = {}, {k: 0.0 for k in ms.merged}, {k: 0 for k in ms.merged}
            for _, _, weights in ms.each():  # the Euclidean mean of unit vectors: the start
                ms.add_uniform(weights)
                for key in ms.merged:
                    tau = ms.tau(weights, key).reshape(-1)
                    norm = math.sqrt(_dot(tau, tau))
                    norms[key] += norm
                    if norm > 0:
                        counts[key] += 1
                        tau.div_(norm)
                    direction[key] = direction[key].add_(tau) if key in direction else tau
            starts_missing = []
            for key in ms.merged:
                norm = math.sqrt(_dot(direction[key], direction[key]))
                if counts[key] and norm < 1e-6:
                    starts_missing.append(key)
                elif norm > 0:
                    direction[key].div_(norm)
            if starts_missing:  # symmetric directions: start from the first nonzero one
                for _, _, weights in ms.each():
                    for key in list(starts_missing):
                        tau = ms.tau(weights, key).reshape(-1)
                        norm = math.sqrt(_dot(tau, tau))
                        if norm > 0:
                            direction[key] = tau.div_(norm)
                            starts_missing.remove(key)
            active = [k for k in ms.merged if counts[k] > 1]
            steps = 0
            while active and steps < MAX_STEPS:
                tangent = {k: torch.zeros_like(direction[k]) for k in active}
                for _, _, weights in ms.each():
                    for key in active:
                        tau = ms.tau(weights, key).reshape(-1)
                        norm = math.sqrt(_dot(tau, tau))
                        if norm > 0:
                            tangent[key].add_(_log(direction[key], tau.div_(norm)))
                still = []
                for key in active:
                    step = tangent.pop(key).div_(counts[key])
                    direction[key] = _exp(direction[key], step)
                    if math.sqrt(_dot(step, step)) > TOLERANCE:
                        still.append(key)
                active, steps = still, steps + 1
            merged = {}
            for key in ms.merged:
                shape = ms.layout[key][0]
                tau = direction.pop(key).mul_(norms[key] / n).reshape(shape)
                merged[key] = tau.add_(ms.base_of(key))
            return result(self, ms.assemble(merged), inputs, {},
                          {"steps": steps, "converged": not active})
        finally:
            ms.close()
