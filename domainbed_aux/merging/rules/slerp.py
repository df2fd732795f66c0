"""Spherical interpolation of task vectors (Shoemake, "Animating rotation with quaternion
curves", SIGGRAPH 1985), per tensor, and its form for M members: the weighted spherical mean
in the tangent space (Buss and Fillmore, "Spherical averages and applications to spherical
splines and interpolation", ACM TOG 2001).

``slerp`` merges two members a and b (of more, the two with the best ID-validation
accuracy, a the best): per tensor, with Omega the angle between tau_a and tau_b,
``tau = sin((1 - t) Omega) / sin(Omega) tau_a + sin(t Omega) / sin(Omega) tau_b`` (linear
interpolation when sin(Omega) is 0 or a task vector is zero), ``theta = theta_0 + tau``.

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
MAX_STEPS = 50


def slerp_tensors(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Shoemake's interpolation of two tensors (float64 arithmetic)."""
    a64, b64 = a.double().reshape(-1), b.double().reshape(-1)
    na, nb = float(a64.norm()), float(b64.norm())
    if na == 0 or nb == 0:
        return ((1 - t) * a64 + t * b64).reshape(a.shape)
    cos = min(max(float(a64.dot(b64)) / (na * nb), -1.0), 1.0)
    omega = math.acos(cos)
    if math.sin(omega) < 1e-12:
        return ((1 - t) * a64 + t * b64).reshape(a.shape)
    s = math.sin(omega)
    return (math.sin((1 - t) * omega) / s * a64 + math.sin(t * omega) / s * b64).reshape(a.shape)


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
                    merged[key] = tau.to(ms.acc_dtype(key)).add_(ms.base_of(key))
            finally:
                a.close()
                b.close()
            return result(self, ms.assemble(merged), inputs, hparams,
                          members=[m for m, _ in pair])
        finally:
            ms.close()


def _log(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The log map of the unit sphere at p (float64 1-D tensors)."""
    cos = min(max(float(p.dot(x)), -1.0), 1.0)
    angle = math.acos(cos)
    if angle < 1e-15:
        return torch.zeros_like(p)
    if math.pi - angle < 1e-12:
        raise AveragingError("two task vectors point in opposite directions: their spherical "
                             "mean is undefined")
    return (x - cos * p).mul_(angle / math.sin(angle))


def _exp(p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    norm = float(v.norm())
    if norm < 1e-300:
        return p
    out = p * math.cos(norm) + v * (math.sin(norm) / norm)
    return out / out.norm()


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
                    tau = ms.tau(weights, key).reshape(-1).float()
                    norm = float(tau.double().norm())
                    norms[key] += norm
                    if norm > 0:
                        counts[key] += 1
                        tau.div_(norm)
                    direction[key] = direction[key].add_(tau) if key in direction else tau
            starts_missing = []
            for key in ms.merged:
                norm = float(direction[key].double().norm())
                if counts[key] and norm < 1e-6:
                    starts_missing.append(key)
                elif norm > 0:
                    direction[key] = (direction[key].double() / norm).float()
            if starts_missing:  # symmetric directions: start from the first nonzero one
                for _, _, weights in ms.each():
                    for key in list(starts_missing):
                        tau = ms.tau(weights, key).double().reshape(-1)
                        if float(tau.norm()) > 0:
                            direction[key] = (tau / tau.norm()).float()
                            starts_missing.remove(key)
            active = [k for k in ms.merged if counts[k] > 1]
            steps = 0
            while active and steps < MAX_STEPS:
                tangent = {k: torch.zeros_like(direction[k]) for k in active}
                for _, _, weights in ms.each():
                    for key in active:
                        tau = ms.tau(weights, key).double().reshape(-1)
                        norm = float(tau.norm())
                        if norm > 0:
                            tangent[key].add_(_log(direction[key].double(), tau / norm).float())
                still = []
                for key in active:
                    step = tangent.pop(key).double().div_(counts[key])
                    direction[key] = _exp(direction[key].double(), step).float()
                    if float(step.norm()) > TOLERANCE:
                        still.append(key)
                active, steps = still, steps + 1
            merged = {}
            for key in ms.merged:
                shape = ms.layout[key][0]
                tau = direction.pop(key).mul_(norms[key] / n).reshape(shape)
                merged[key] = tau.to(ms.acc_dtype(key)).add_(ms.base_of(key))
            return result(self, ms.assemble(merged), inputs, {},
                          {"steps": steps, "converged": not active})
        finally:
            ms.close()
