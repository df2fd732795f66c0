"""RegMean (Jin, Ren, Preotiuc-Pietro and Cheng, "Dataless Knowledge Fusion by Merging
Weights of Language Models", ICLR 2023): each linear layer is the least-squares fit of the
members' outputs on their own inputs, ``W = (sum_i G_i)^-1 sum_i G_i W_i`` with
``G_i = X_i^T X_i`` the Gram matrix of the layer's inputs in member i on training-domain
examples; every other tensor is averaged uniformly.

Here ``W_i`` is ``[weight, bias]^T`` of an ``nn.Linear`` (the bias as the weight of a
constant input 1, so ``X_i`` gets a column of ones), the off-diagonal entries of each G_i
are scaled by ``alpha`` (the paper's regularisation; alpha = 1: the plain least-squares
solution), and the system is solved in float64 (the pseudo-inverse when it is singular).
Convolutions are averaged uniformly (the paper merges linear layers)."""

import torch

from domainbed_aux.merging.contract import HParam, MergeRule, result
from domainbed_aux.merging.data import collect, device_of, linear_layers
from domainbed_aux.merging.registry import register_rule
from domainbed_aux.merging.rules.ties import by_prefix
from domainbed_aux.merging.stream import MemberSet


def layer_grams(model: torch.nn.Module, batches):
    """``[(weight keys, bias keys, G, W~)]`` per linear layer: G the Gram matrix of its
    inputs with a column of ones when it has a bias, W~ = [weight, bias] (float64)."""
    layers = linear_layers(model)
    grams = [None] * len(layers)

    def hook(index, has_bias):
        def record(_, inputs):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).double()
            if has_bias:
                x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], 1)
            gram = (x.T @ x).cpu()
            grams[index] = gram if grams[index] is None else grams[index] + gram
        return record
    handles = [layer.register_forward_pre_hook(hook(i, layer.bias is not None))
               for i, (layer, _, _) in enumerate(layers)]
    device = device_of(model)
    try:
        with torch.no_grad():
            for x, _ in batches:
                model.predict(x.to(device)) if hasattr(model, "predict") else model(x.to(device))
    finally:
        for handle in handles:
            handle.remove()
    out = []
    for (layer, weight_keys, bias_keys), gram in zip(layers, grams):
        if gram is None or not weight_keys:
            continue  # a layer the prediction does not use
        w = layer.weight.detach().double().cpu()
        if layer.bias is not None:
            w = torch.cat([w, layer.bias.detach().double().cpu()[:, None]], 1)
        out.append((weight_keys, bias_keys, gram, w))
    return out


def solve(lhs: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    try:
        return torch.linalg.solve(lhs, rhs)
    except RuntimeError:  # singular: the minimum-norm least-squares solution
        return torch.linalg.pinv(lhs, hermitian=True) @ rhs


@register_rule
class RegMean(MergeRule):
    name = "regmean"
    title = "RegMean"
    source = "Jin et al., Dataless Knowledge Fusion by Merging Weights of Language Models, ICLR 2023"
    definition = ("per linear layer: W = (sum_i G_i)^-1 sum_i G_i W_i, G_i the Gram matrix of "
                  "the layer's inputs in member i on training-domain examples (off-diagonal "
                  "scaled by alpha); other tensors averaged")
    needs = frozenset({"train_data"})
    member_statistics = "Gram matrix of each linear layer's inputs"
    hparams = (HParam("alpha", 0.9, (0.5, 0.7, 0.9, 1.0), "scale of the Gram matrices' "
                                                          "off-diagonal entries"),
               HParam("n_examples", 256, (), "training-domain examples per Gram matrix"))
    passes = 1
    memory = ("uniform sum + one member and its network + per linear layer two "
              "(in+1) x (in+1) and (in+1) x out float64 sums")
    order = 21

    def merge(self, inputs, hparams):
        return next(self.merge_grid(inputs, [hparams]))[1]

    def merge_grid(self, inputs, points):
        self.check_inputs(inputs)
        for group in by_prefix(points, ["n_examples"]):
            ms = MemberSet(inputs)
            try:
                batches = collect(inputs.data.batches(int(group[0]["n_examples"])))
                total, layers = {}, {}
                for _, _, weights in ms.each():
                    ms.add_uniform(weights)
                    state = {k: weights.get(k) for k in ms.keys}
                    for key in ms.merged:
                        value = ms.theta(weights, key)
                        total[key] = total[key].add_(value) if key in total else value
                    for weight_keys, bias_keys, gram, w in layer_grams(
                            inputs.data.model(state), batches):
                        name = ms.canonical[weight_keys[0]]
                        diag = torch.diagonal(gram)
                        sums = (gram, gram @ w.T, diag[:, None] * w.T)
                        if name in layers:
                            layers[name] = (layers[name][0],) + tuple(
                                a + b for a, b in zip(layers[name][1:], sums))
                        else:
                            bias = ms.canonical[bias_keys[0]] if bias_keys else None
                            layers[name] = (bias,) + sums
                    del state
                n = len(ms)
                for point in group:
                    alpha = float(point["alpha"])
                    merged = {k: total[k] / n for k in ms.merged}
                    for weight_key, (bias_key, gram, cross, diag_cross) in layers.items():
                        lhs = alpha * gram + (1 - alpha) * torch.diag(torch.diagonal(gram))
                        rhs = alpha * cross + (1 - alpha) * diag_cross
                        fitted = solve(lhs, rhs).T  # out x (in [+ 1])
                        shape = ms.layout[weight_key][0]
                        merged[weight_key] = fitted[:, :shape[1]].to(ms.acc_dtype(weight_key))
                        if bias_key is not None:
                            merged[bias_key] = fitted[:, shape[1]].to(ms.acc_dtype(bias_key))
                    yield dict(point), result(self, ms.assemble(merged), inputs, point,
                                              {"linear_layers": sorted(layers)})
            finally:
                ms.close()
