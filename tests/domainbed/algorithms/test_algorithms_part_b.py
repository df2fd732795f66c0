"""Update rules of MLDG, SagNet, ARM, Transfer, IB_ERM, IB_IRM, CAD, CondCAD, CausIRL_CORAL,
CausIRL_MMD, EQRM, RDM, URM and ERMPlusPlus, checked against hand computations (written
from docs/ALGORITHMS.md), their hyperparameters, and checkpoint round trips.

tests/domainbed/algorithms/test_algorithms.py already runs 3 updates and a predict of every
algorithm; these tests check what a wrong implementation would get wrong.
"""

import copy
import functools
import math
import statistics

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from domainbed import algorithms, datasets, hparams_registry
from domainbed.lib.lars import LARS
from domainbed.lib.misc import seed_hash
from domainbed.training.start import (load_checkpoint, rng_states, save_checkpoint,
                                      set_rng_states)

DATASETS = ["Debug28", pytest.param("Debug224", marks=pytest.mark.slow)]


@functools.lru_cache(maxsize=None)
def _dataset(name):
    return datasets.get_dataset_class(name)("", [0], {})


def _setup(name, dataset_name, **overrides):
    """The algorithm (seeded init) and 2 training domains of 4 (Debug28) or 2 rows."""
    hp = hparams_registry.default_hparams(name, dataset_name)
    hp.update(batch_size=4, pretrained=False, resnet18=True)
    hp.update(overrides)
    dataset = _dataset(dataset_name)
    n = 4 if dataset_name == "Debug28" else 2
    minibatches = [(env.tensors[0][:n], env.tensors[1][:n]) for env in list(dataset)[1:]]
    torch.manual_seed(0)
    np.random.seed(0)
    algorithm = algorithms.get_algorithm_class(name)(dataset.input_shape, dataset.num_classes,
                                                     len(minibatches), hp)
    return algorithm, minibatches


def _cat(minibatches):
    return torch.cat([x for x, _ in minibatches]), torch.cat([y for _, y in minibatches])


def _grads_match(params, twin_params, loss, rtol=1e-4, atol=1e-6):
    """The grads left on ``params`` by the algorithm equal d loss / d ``twin_params``."""
    twin_params = list(twin_params)
    expected = torch.autograd.grad(loss, twin_params, allow_unused=True)
    for p, g in zip(params, expected):
        g = torch.zeros_like(p) if g is None else g
        got = torch.zeros_like(p) if p.grad is None else p.grad
        torch.testing.assert_close(got, g, rtol=rtol, atol=atol)


def _row_ce(logits, y):
    """Per-row cross-entropy, by hand."""
    return -(logits.log_softmax(1).gather(1, y[:, None]).squeeze(1))


def _phi(t):
    return 0.5 * (1 + math.erf(t / math.sqrt(2)))


def _kde_quantile(values, q):
    """The q quantile of a Gaussian KDE with bandwidth 1.06 std n^-1/5, in float64 python."""
    bw = 1.06 * statistics.stdev(values) * len(values) ** (-0.2)
    lo, hi = min(values) - 10 * bw, max(values) + 10 * bw
    for _ in range(200):
        mid = (lo + hi) / 2
        if statistics.fmean(_phi((mid - v) / bw) for v in values) > q:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


# ---------------------------------------------------------------- MLDG


@pytest.mark.parametrize("dataset_name", DATASETS)
def test_mldg_meta_gradient_combines_inner_and_outer_losses(dataset_name, one_thread):
    beta = 0.5
    algorithm, minibatches = _setup("MLDG", dataset_name, mldg_beta=beta, n_meta_test=1)
    reference = copy.deepcopy(algorithm.network)
    state = torch.get_rng_state()
    perm = torch.randperm(2).tolist()  # the split the update will draw
    torch.set_rng_state(state)
    values = algorithm.update(minibatches)

    (xi, yi), (xj, yj) = minibatches[perm[0]], minibatches[perm[1]]
    inner = copy.deepcopy(reference)
    inner_opt = torch.optim.Adam(inner.parameters(), lr=algorithm.hparams["lr"],
                                 weight_decay=algorithm.hparams["weight_decay"])
    loss_i = F.cross_entropy(inner(xi), yi)
    grads_i = torch.autograd.grad(loss_i, list(inner.parameters()))
    for p, g in zip(inner.parameters(), grads_i):
        p.grad = g
    inner_opt.step()  # theta'
    loss_j = F.cross_entropy(inner(xj), yj)
    grads_j = torch.autograd.grad(loss_j, list(inner.parameters()), allow_unused=True)

    n_domains = 2  # upstream divides by the domains, not by the one pair
    assert values["loss"] == pytest.approx((loss_i.item() + beta * loss_j.item()) / n_domains,
                                           rel=1e-5)
    for p, g_i, g_j in zip(algorithm.network.parameters(), grads_i, grads_j):
        expected = g_i / n_domains + (0 if g_j is None else beta * g_j / n_domains)
        torch.testing.assert_close(p.grad, expected, rtol=1e-4, atol=1e-7)


def test_mldg_with_as_many_meta_test_as_domains_takes_no_step(one_thread):
    algorithm, minibatches = _setup("MLDG", "Debug28", n_meta_test=2)
    before = copy.deepcopy(algorithm.network.state_dict())
    values = algorithm.update(minibatches)
    assert values["loss"] == 0.0
    assert all(torch.equal(before[k], v) for k, v in algorithm.network.state_dict().items())


# ---------------------------------------------------------------- SagNet


def _randomize(h, what, eps=1e-5):
    """SagNet's statistics randomisation for 2-D features, from the doc's formulas."""
    alpha = torch.rand(h.shape[0], 1)
    mu, var = h.mean(1, keepdim=True), h.var(1, keepdim=True)
    normed = (h - mu) / (var + eps).sqrt()
    perm = torch.randperm(h.shape[0])
    if what == "style":
        mu, var = alpha * mu + (1 - alpha) * mu[perm], alpha * var + (1 - alpha) * var[perm]
    else:
        normed = normed[perm].detach()
    return normed * (var + eps).sqrt() + mu


@pytest.mark.parametrize("dataset_name", DATASETS)
def test_sagnet_three_stages_step_the_right_networks(dataset_name, one_thread):
    w_adv = 0.3
    algorithm, minibatches = _setup("SagNet", dataset_name, sag_w_adv=w_adv)
    twin = copy.deepcopy(algorithm)
    assert twin.optimizer_f.param_groups[0]["params"][0] is next(twin.network_f.parameters())
    state = torch.get_rng_state()
    values = algorithm.update(minibatches)
    torch.set_rng_state(state)

    x, y = _cat(minibatches)
    f, c, s = twin.network_f, twin.network_c, twin.network_s
    twin.optimizer_f.zero_grad()
    twin.optimizer_c.zero_grad()
    loss_c = F.cross_entropy(c(_randomize(f(x), "style")), y)
    loss_c.backward()
    twin.optimizer_f.step()
    twin.optimizer_c.step()
    twin.optimizer_s.zero_grad()
    loss_s = F.cross_entropy(s(_randomize(f(x), "content")), y)
    loss_s.backward()
    twin.optimizer_s.step()
    twin.optimizer_f.zero_grad()
    loss_adv = w_adv * -F.log_softmax(s(_randomize(f(x), "content")), dim=1).mean()
    loss_adv.backward()
    twin.optimizer_f.step()

    assert values["loss_c"] == pytest.approx(loss_c.item(), rel=1e-5)
    assert values["loss_s"] == pytest.approx(loss_s.item(), rel=1e-5)
    assert values["loss_adv"] == pytest.approx(loss_adv.item(), rel=1e-5)
    assert loss_adv.item() / w_adv >= math.log(2) - 1e-6  # CE to uniform >= log K
    for key, value in twin.state_dict().items():
        torch.testing.assert_close(algorithm.state_dict()[key], value, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- ARM


@pytest.mark.parametrize("dataset_name", DATASETS)
def test_arm_context_is_the_group_mean_and_context_net_never_trains(dataset_name, one_thread):
    n = 4 if dataset_name == "Debug28" else 2
    algorithm, minibatches = _setup("ARM", dataset_name, batch_size=n)
    assert algorithm.support_size == n
    weights = {k: v.clone() for k, v in algorithm.context_net.named_parameters()}
    bn = next(m for m in algorithm.context_net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    running_mean = bn.running_mean.clone()
    network_before = copy.deepcopy(algorithm.network.state_dict())
    algorithm.update(minibatches)
    assert all(torch.equal(weights[k], v) for k, v in algorithm.context_net.named_parameters())
    assert not torch.equal(running_mean, bn.running_mean)  # only its BN statistics move
    assert any(not torch.equal(network_before[k], v)
               for k, v in algorithm.network.state_dict().items())

    algorithm.eval()
    x, _ = _cat(minibatches)  # 2n rows: two groups of support_size
    with torch.no_grad():
        context = algorithm.context_net(x)
        groups = [context[:n].mean(0, keepdim=True).expand(n, -1, -1, -1),
                  context[n:].mean(0, keepdim=True).expand(n, -1, -1, -1)]
        expected = algorithm.network(torch.cat([x, torch.cat(groups)], dim=1))
        torch.testing.assert_close(algorithm.predict(x), expected, rtol=1e-4, atol=1e-5)
        odd = x[:n + 1]  # not a multiple of support_size: one group
        whole = algorithm.context_net(odd).mean(0, keepdim=True).expand(n + 1, -1, -1, -1)
        torch.testing.assert_close(algorithm.predict(odd),
                                   algorithm.network(torch.cat([odd, whole], dim=1)),
                                   rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- Transfer


def _distance(a, b):
    return math.sqrt(sum(float(((a[k] - b[k]) ** 2).sum()) for k in a))


@pytest.mark.parametrize("dataset_name", DATASETS)
def test_transfer_gda_trains_only_the_projected_adversarial_head(dataset_name, one_thread):
    delta = 1e-3
    algorithm, minibatches = _setup("Transfer", dataset_name, gda=True, d_steps_per_g=2,
                                    delta=delta, lr_d=1.0)
    x, y = _cat(minibatches)
    twin = copy.deepcopy(algorithm)
    params = {k: v.clone() for k, v in algorithm.named_parameters() if "adv" not in k}
    values = algorithm.update(minibatches)
    assert values["loss"] == pytest.approx(
        F.cross_entropy(twin.classifier(twin.featurizer(x)), y).item(), rel=1e-5)
    assert values["gap"] >= 0
    # upstream's quirk: with gda, featurizer and classifier never change
    assert all(torch.equal(params[k], v) for k, v in algorithm.named_parameters()
               if "adv" not in k)
    adv, ref = algorithm.adv_classifier.state_dict(), algorithm.classifier.state_dict()
    assert _distance(adv, ref) == pytest.approx(delta, rel=1e-4)  # on the ball's surface


def test_transfer_without_gda_trains_the_classifier_within_delta(one_thread):
    algorithm, minibatches = _setup("Transfer", "Debug28", gda=False, d_steps_per_g=3,
                                    delta=0.5)
    before = copy.deepcopy(algorithm.classifier.state_dict())
    algorithm.update(minibatches)
    assert any(not torch.equal(before[k], v) for k, v in algorithm.classifier.state_dict().items())
    adv, ref = algorithm.adv_classifier.state_dict(), algorithm.classifier.state_dict()
    assert 0 < _distance(adv, ref) <= 0.5 + 1e-6


# ---------------------------------------------------------------- IB_ERM, IB_IRM


def _ib_by_hand(features, minibatches):
    sizes = [len(x) for x, _ in minibatches]
    terms = []
    for f in features.split(sizes):
        var = ((f - f.mean(0)) ** 2).sum(0) / (len(f) - 1)
        terms.append(var.mean())
    return sum(terms) / len(terms)


def _nll_by_hand(logits, minibatches):
    sizes = [len(x) for x, _ in minibatches]
    terms = [_row_ce(lg, y).mean() for lg, (_, y) in zip(logits.split(sizes), minibatches)]
    return sum(terms) / len(terms)


@pytest.mark.parametrize("dataset_name", DATASETS)
def test_ib_erm_penalty_is_the_per_domain_feature_variance(dataset_name, one_thread):
    algorithm, minibatches = _setup("IB_ERM", dataset_name, ib_lambda=10.0,
                                    ib_penalty_anneal_iters=1)
    x, _ = _cat(minibatches)
    for step in range(2):  # weight 0 at count 0; 10 (and a fresh Adam) at count 1
        twin = copy.deepcopy(algorithm)
        values = algorithm.update(minibatches)
        features = twin.featurizer(x)
        nll = _nll_by_hand(twin.classifier(features), minibatches)
        ib = _ib_by_hand(features, minibatches)
        loss = nll + (10.0 if step == 1 else 0.0) * ib
        assert values["IB_penalty"] == pytest.approx(ib.item(), rel=1e-4)
        assert values["nll"] == pytest.approx(nll.item(), rel=1e-5)
        assert values["loss"] == pytest.approx(loss.item(), rel=1e-4)
        _grads_match(algorithm.network.parameters(), twin.network.parameters(), loss)
    steps = {int(s["step"]) for s in algorithm.optimizer.state.values()}
    assert steps == {1}  # re-created at the switch
    assert algorithm.update_count.item() == 2


def _irm_by_hand(logits, y):
    scale = torch.ones((), requires_grad=True)
    g1 = torch.autograd.grad(_row_ce(logits[0::2] * scale, y[0::2]).mean(), scale,
                             create_graph=True)[0]
    g2 = torch.autograd.grad(_row_ce(logits[1::2] * scale, y[1::2]).mean(), scale,
                             create_graph=True)[0]
    return g1 * g2


@pytest.mark.parametrize("dataset_name", DATASETS)
def test_ib_irm_combines_irm_and_ib_weights(dataset_name, one_thread):
    algorithm, minibatches = _setup("IB_IRM", dataset_name, irm_lambda=3.0,
                                    irm_penalty_anneal_iters=0, ib_lambda=7.0,
                                    ib_penalty_anneal_iters=1)
    old_optimizer = algorithm.optimizer
    twin = copy.deepcopy(algorithm)
    values = algorithm.update(minibatches)
    assert algorithm.optimizer is not old_optimizer  # count 0 == irm switch step
    x, _ = _cat(minibatches)
    features = twin.featurizer(x)
    logits = twin.classifier(features)
    sizes = [len(v) for v, _ in minibatches]
    irm = sum(_irm_by_hand(lg, y) for lg, (_, y) in zip(logits.split(sizes), minibatches)) / 2
    nll, ib = _nll_by_hand(logits, minibatches), _ib_by_hand(features, minibatches)
    loss = nll + 3.0 * irm  # IB weight still 0 at count 0
    assert values["IRM_penalty"] == pytest.approx(irm.item(), rel=1e-4, abs=1e-9)
    assert values["IB_penalty"] == pytest.approx(ib.item(), rel=1e-4)
    assert values["loss"] == pytest.approx(loss.item(), rel=1e-4)
    _grads_match(algorithm.network.parameters(), twin.network.parameters(), loss)


# ---------------------------------------------------------------- CAD, CondCAD


def _lse(values):
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _cad_by_hand(z, y, d, temperature, conditional, flipped):
    """Row losses as log-ratios of explicit sums over partners, then the finite mean."""
    s = (z.double() @ z.double().T / temperature).tolist()
    y, d = y.tolist(), d.tolist()
    rows = []
    for i in range(len(y)):
        others = [j for j in range(len(y)) if j != i]
        same_label = [j for j in others if y[j] == y[i]]
        if conditional:
            target = [j for j in same_label if (d[j] != d[i]) == flipped]
            if not target:
                continue
            log_ratio = _lse([s[i][j] for j in target]) - _lse([s[i][j] for j in same_label])
        else:
            if not same_label:
                continue
            if flipped:
                numerator = [s[i][j] for j in others if d[j] != d[i]]
            else:  # own domain, self included with its zeroed logit
                numerator = [s[i][j] for j in others if d[j] == d[i]] + [0.0]
            if not numerator:  # log 0: not finite, left out of the mean
                continue
            log_ratio = _lse(numerator) - _lse([s[i][j] for j in others])
        rows.append((-1 if flipped else 1) * temperature / 0.07 * log_ratio)
    return statistics.fmean(rows) if rows else 0.0


@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("flipped", [True, False])
def test_cad_contrastive_loss_on_a_hand_built_batch(conditional, flipped):
    from domainbed.algorithms.causal import bottleneck_loss
    z = torch.randn(7, 3, generator=torch.Generator().manual_seed(1)) * 0.5
    y = torch.tensor([0, 0, 1, 1, 0, 1, 2])  # label 2 has no partner
    d = torch.tensor([0, 1, 0, 1, 1, 0, 0])
    got = bottleneck_loss(z, y, d, 0.1, conditional=conditional, flipped=flipped)
    assert got.item() == pytest.approx(_cad_by_hand(z, y, d, 0.1, conditional, flipped),
                                       rel=1e-4)


@pytest.mark.parametrize("name", ["CAD", "CondCAD"])
@pytest.mark.parametrize("dataset_name", DATASETS)
def test_cad_update_adds_lmbda_times_the_bottleneck(name, dataset_name, one_thread):
    algorithm, minibatches = _setup(name, dataset_name, lmbda=2.0)
    twin = copy.deepcopy(algorithm)
    values = algorithm.update(minibatches)
    x, y = _cat(minibatches)
    d = torch.cat([torch.full((len(v),), e) for e, (v, _) in enumerate(minibatches)])
    z = twin.featurizer(x)
    bn = _cad_by_hand(z.detach(), y, d, 0.1, name == "CondCAD", True)
    clf = _row_ce(twin.classifier(z), y).mean()
    assert values["bn_loss"] == pytest.approx(bn, rel=1e-4, abs=1e-6)
    assert values["clf_loss"] == pytest.approx(clf.item(), rel=1e-5)
    assert values["total_loss"] == pytest.approx(clf.item() + 2.0 * bn, rel=1e-4, abs=1e-6)


# ---------------------------------------------------------------- CausIRL


def _coral_by_hand(a, b):
    return ((a.mean(0) - b.mean(0)) ** 2).mean() + ((torch.cov(a.T) - torch.cov(b.T)) ** 2).mean()


def _mmd_by_hand(a, b, gammas):
    def k(u, v):
        sq = ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1).clamp_min(1e-30)
        return sum(torch.exp(-g * sq) for g in gammas)
    return k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean()


@pytest.mark.parametrize("name", ["CausIRL_CORAL", "CausIRL_MMD"])
@pytest.mark.parametrize("dataset_name", DATASETS)
def test_causirl_penalty_between_random_halves(name, dataset_name, one_thread):
    algorithm, minibatches = _setup(name, dataset_name, mmd_gamma=2.0)
    n = len(minibatches[0][0])
    for seed in range(100):  # a seed whose cuts leave at least two rows on each side
        rs = np.random.RandomState(seed)
        cuts = [rs.randint(0, n) for _ in minibatches]
        if sum(cuts) > 1 and sum(n - c for c in cuts) > 1:
            break
    twin = copy.deepcopy(algorithm)
    np.random.seed(seed)
    values = algorithm.update(minibatches)
    features = [twin.featurizer(x) for x, _ in minibatches]
    objective = sum(_row_ce(twin.classifier(f), y).mean()
                    for f, (_, y) in zip(features, minibatches)) / len(minibatches)
    first = torch.cat([f[:c] for f, c in zip(features, cuts)])
    second = torch.cat([f[c:] for f, c in zip(features, cuts)])
    if name == "CausIRL_CORAL":
        penalty = _coral_by_hand(first, second)
    else:
        penalty = _mmd_by_hand(first, second, (0.001, 0.01, 0.1, 1, 10, 100, 1000))
    assert values["loss"] == pytest.approx(objective.item(), rel=1e-5)
    assert values["penalty"] == pytest.approx(penalty.item(), rel=1e-3, abs=1e-6)
    # the MMD's squared distances are expanded there, direct here: gamma 1000 amplifies
    _grads_match(algorithm.network.parameters(), twin.network.parameters(),
                 objective + 2.0 * penalty, rtol=1e-3, atol=2e-5)


# ---------------------------------------------------------------- EQRM


def test_eqrm_kde_quantile_on_a_hand_built_risk_vector():
    from domainbed.algorithms.risk_distribution import KDEQuantile
    values = [0.3, 0.9, 1.6, 0.5]
    risks = torch.tensor(values, requires_grad=True)
    dist = KDEQuantile()
    dist.estimate_parameters(risks)
    k = dist.icdf(torch.tensor(0.75, dtype=torch.float64))
    assert k.item() == pytest.approx(_kde_quantile(values, 0.75), abs=1e-4)
    k.backward()
    grad = risks.grad.tolist()
    # a shift of all risks shifts the quantile: the gradients sum to 1
    assert sum(grad) == pytest.approx(1.0, abs=1e-4)
    # interior risks act only through the bandwidth, i.e. through the std: d std / d r_i
    # is proportional to r_i - mean
    mean = statistics.fmean(values)
    assert grad[3] / grad[1] == pytest.approx((values[3] - mean) / (values[1] - mean), rel=1e-3)


@pytest.mark.parametrize("dataset_name", DATASETS)
def test_eqrm_mean_risk_then_quantile_with_eqrm_lr(dataset_name, one_thread):
    algorithm, minibatches = _setup("EQRM", dataset_name, eqrm_burnin_iters=1,
                                    eqrm_quantile=0.8, eqrm_lr=1e-5)
    for step in range(2):
        twin = copy.deepcopy(algorithm.network)
        values = algorithm.update(minibatches)
        risks = [F.cross_entropy(twin(x), y).item() for x, y in minibatches]
        expected = statistics.fmean(risks) if step == 0 else _kde_quantile(risks, 0.8)
        assert values["loss"] == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert algorithm.optimizer.param_groups[0]["lr"] == 1e-5  # re-created at the burn-in
    assert {int(s["step"]) for s in algorithm.optimizer.state.values()} == {1}


# ---------------------------------------------------------------- RDM


@pytest.mark.parametrize("dataset_name", DATASETS)
def test_rdm_loss_by_hand(dataset_name, one_thread):
    algorithm, minibatches = _setup("RDM", dataset_name, rdm_penalty_anneal_iters=0,
                                    rdm_lambda=2.0, variance_weight=0.5, rdm_lr=3e-5)
    # in float64: gamma 1000 amplifies float32 rounding by a CPU-dependent amount (the same
    # update on an AMD EPYC differed from the hand computation by 3.7e-5)
    algorithm.double()
    minibatches = [(x.double(), y) for x, y in minibatches]
    twin = copy.deepcopy(algorithm.network)
    values = algorithm.update(minibatches)
    x, y = _cat(minibatches)
    sizes = [len(v) for v, _ in minibatches]
    rows = torch.stack([_row_ce(lg, yy) for lg, yy in zip(twin(x).split(sizes), y.split(sizes))])
    worst = rows[int(rows.mean(1).argmax())]
    pooled = rows.flatten()
    gammas = (0.0001, 0.001, 0.01, 0.1, 1, 10, 100, 1000)
    matching = _mmd_by_hand(worst[:, None], pooled[:, None], gammas)

    def var(t):
        return ((t - t.mean()) ** 2).sum() / (len(t) - 1)
    variance = var(pooled) + var(worst)
    erm = rows.mean(1).mean()
    total = erm + 2.0 * matching + 0.5 * variance
    assert values["erm_loss"] == pytest.approx(erm.item(), rel=1e-5)
    assert values["matching_penalty"] == pytest.approx(matching.item(), rel=1e-3, abs=1e-6)
    assert values["variance_penalty"] == pytest.approx(variance.item(), rel=1e-4)
    assert values["total_loss"] == pytest.approx(total.item(), rel=1e-4)
    assert values["update_count"] == 1.0 and values["rdm_lambda"] == 2.0
    assert algorithm.optimizer.param_groups[0]["lr"] == 3e-5  # re-created at the switch
    _grads_match(algorithm.network.parameters(), twin.parameters(), total, rtol=1e-7,
                 atol=1e-9)


# ---------------------------------------------------------------- URM


@pytest.mark.parametrize("dataset_name", DATASETS)
def test_urm_generator_and_discriminator_losses(dataset_name, one_thread):
    lam = 0.5
    algorithm, minibatches = _setup("URM", dataset_name, urm_adv_lambda=lam,
                                    urm_discriminator_hidden_layers=2)
    names = [name for name, _ in algorithm.discriminator.named_children()]
    assert names == ["dense1", "act1", "dense2", "act22", "dense3", "act23", "output"]
    twin = copy.deepcopy(algorithm)
    state = torch.get_rng_state()
    values = algorithm.update(minibatches)
    torch.set_rng_state(state)

    x, y = _cat(minibatches)
    f = torch.tanh(twin.featurizer(x))  # the default urm_generator_output
    torch.testing.assert_close(twin.predict(x), twin.classifier(f))
    ce = _row_ce(twin.classifier(f), y).mean()
    fooled = F.binary_cross_entropy_with_logits(twin.discriminator(f).squeeze(1),
                                                torch.ones(len(f)))
    loss = ce + lam * fooled
    assert values["loss"] == pytest.approx(loss.item(), rel=1e-5)
    _grads_match(list(algorithm.featurizer.parameters()) +
                 list(algorithm.classifier.parameters()),
                 list(twin.featurizer.parameters()) + list(twin.classifier.parameters()), loss)

    noise = -1 + 2 * torch.rand(f.shape)  # tanh: uniform on [-1, 1)
    d = twin.discriminator
    d_loss = F.binary_cross_entropy_with_logits(d(noise).squeeze(1), torch.ones(len(f))) \
        + lam * F.binary_cross_entropy_with_logits(d(f.detach()).squeeze(1), torch.zeros(len(f)))
    twin.discriminator_opt.zero_grad()
    d_loss.backward()
    twin.discriminator_opt.step()
    for a, b in zip(algorithm.discriminator.parameters(), twin.discriminator.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_urm_refuses_an_unbounded_generator_output():
    with pytest.raises(ValueError, match="identity.*tanh"):
        _setup("URM", "Debug28", urm_generator_output="identity")


# ---------------------------------------------------------------- ERMPlusPlus


@pytest.mark.parametrize("dataset_name, linear_steps, sma_start, n_calls",
                         [("Debug28", 1, 3, 5),
                          pytest.param("Debug224", 0, 2, 3, marks=pytest.mark.slow)])
def test_ermplusplus_linear_phase_then_sma(dataset_name, linear_steps, sma_start, n_calls,
                                           one_thread):
    algorithm, minibatches = _setup("ERMPlusPlus", dataset_name, linear_steps=linear_steps)
    algorithm.sma_start_iter = sma_start
    featurizer_before = [p.detach().clone() for p in algorithm.featurizer.parameters()]
    history = []
    for call in range(1, n_calls + 1):
        algorithm.update(minibatches)
        history.append({k: v.detach().clone() for k, v in algorithm.network.named_parameters()})
        unchanged = all(torch.equal(b, p) for b, p in
                        zip(featurizer_before, algorithm.featurizer.parameters()))
        assert unchanged == (call <= linear_steps + 1), call
    linear_steps_done = {int(s["step"]) for s in algorithm.linear_optimizer.state.values()}
    full_steps_done = {int(s["step"]) for s in algorithm.optimizer.state.values()}
    assert linear_steps_done == {linear_steps + 1}
    assert full_steps_done == {n_calls - linear_steps - 1}
    # the SMA is the uniform average of the weights after calls sma_start - 1 .. n_calls
    window = history[sma_start - 2:]
    for name, value in algorithm.network_sma.named_parameters():
        expected = sum(h[name] for h in window) / len(window)
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
    x, _ = _cat(minibatches)
    algorithm.eval()
    with torch.no_grad():
        torch.testing.assert_close(algorithm.predict(x), algorithm.network_sma(x))
        assert not torch.allclose(algorithm.predict(x), algorithm.network(x))


def test_lars_step_by_hand():
    w = torch.nn.Parameter(torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]]))
    b = torch.nn.Parameter(torch.tensor([0.5, -0.5]))
    opt = LARS([w, b], lr=0.1, weight_decay=0.01)
    w0, b0 = w.detach().clone(), b.detach().clone()
    mu_w, mu_b = torch.zeros_like(w0), torch.zeros_like(b0)
    for gw, gb in [([[0.1, 0.2, -0.3], [0.4, 0.0, 0.1]], [1.0, -2.0]),
                   ([[-0.2, 0.1, 0.0], [0.3, 0.3, -0.1]], [0.5, 0.5])]:
        w.grad, b.grad = torch.tensor(gw), torch.tensor(gb)
        dp = w.grad + 0.01 * w0
        dp = dp * (0.001 * w0.norm() / dp.norm())
        mu_w, mu_b = 0.9 * mu_w + dp, 0.9 * mu_b + b.grad  # biases: no decay, no scaling
        w0, b0 = w0 - 0.1 * mu_w, b0 - 0.1 * mu_b
        opt.step()
        torch.testing.assert_close(w.detach(), w0)
        torch.testing.assert_close(b.detach(), b0)


def test_ermplusplus_with_lars_trains(one_thread):
    # upstream crashes here (its LARS rejects foreach=False)
    algorithm, minibatches = _setup("ERMPlusPlus", "Debug28", lars=True, linear_steps=0)
    assert isinstance(algorithm.optimizer, LARS) and isinstance(algorithm.linear_optimizer, LARS)
    before = copy.deepcopy(algorithm.featurizer.state_dict())
    for _ in range(2):
        algorithm.update(minibatches)
    assert any(not torch.equal(before[k], v) for k, v in algorithm.featurizer.state_dict().items())


# ---------------------------------------------------------------- hyperparameters


def _u(a, b):
    return lambda r: r.uniform(a, b)


def _log10u(a, b):
    return lambda r: 10 ** r.uniform(a, b)


def _expected_hparams(algorithm, dataset):
    """name -> (default, draw), from ALGORITHMS.md, for the names each algorithm adds or
    changes."""
    small = dataset in ("Debug28", "RotatedMNIST", "ColoredMNIST")
    cad = {"lmbda": (1e-1, lambda r: r.choice([1e-4, 1e-3, 1e-2, 1e-1, 1, 1e1, 1e2])),
           "temperature": (0.1, lambda r: r.choice([0.05, 0.1])),
           "is_normalized": (False, lambda r: False), "is_project": (False, lambda r: False),
           "is_flipped": (True, lambda r: True)}
    ib = {"ib_lambda": (1e2, _log10u(-1, 5)),
          "ib_penalty_anneal_iters": (500, lambda r: int(10 ** r.uniform(0, 4)))}
    irm = {"irm_lambda": (1e2, _log10u(-1, 5)),
           "irm_penalty_anneal_iters": (500, lambda r: int(10 ** r.uniform(0, 4)))}
    mmd = {"mmd_gamma": (1.0, _log10u(-1, 1))}
    if dataset == "DomainNet":
        rdm = {"rdm_lambda": (0.5, _u(0.1, 1.0)),
               "rdm_penalty_anneal_iters": (2400, lambda r: int(r.uniform(1500, 3000)))}
    else:
        rdm = {"rdm_lambda": (5.0, _u(1.0, 10.0) if dataset in ("PACS", "TerraIncognita")
                              else _u(0.1, 10.0)),
               "rdm_penalty_anneal_iters": (1500, lambda r: int(r.uniform(800, 2700)))}
    rdm["variance_weight"] = (0.0, lambda r: r.choice([0.0])) \
        if dataset in ("TerraIncognita", "OfficeHome", "DomainNet") \
        else (0.004, _u(0.001, 0.007))
    rdm["rdm_lr"] = (1.5e-5, _u(8e-6, 2e-5))
    if not small:
        rdm["batch_size"] = (40, lambda r: int(r.uniform(30, 60))) \
            if dataset in ("DomainNet", "TerraIncognita") \
            else (88, lambda r: int(r.uniform(70, 100)))
    urm = {"urm": ("adversarial", lambda r: str(r.choice(["adversarial"]))),
           "urm_adv_lambda": (0.1, lambda r: float(r.uniform(0, 0.2))),
           "urm_discriminator_label_smoothing": (0, lambda r: float(r.uniform(0, 0))),
           "urm_discriminator_optimizer": ("adam", lambda r: str(r.choice(["adam"]))),
           "urm_discriminator_hidden_layers": (1, lambda r: int(r.choice([1, 2, 3]))),
           "urm_generator_output": ("tanh", lambda r: str(r.choice(["tanh", "relu"]))),
           "urm_discriminator_lr": (1e-3, _log10u(-5.5, -3.5)) if small
           else (5e-5, _log10u(-6, -4.5))}
    return {
        "MLDG": {"mldg_beta": (1.0, _log10u(-1, 1)),
                 "n_meta_test": (2, lambda r: r.choice([1, 2]))},
        "SagNet": {"sag_w_adv": (0.1, _log10u(-2, 1))},
        "ARM": {} if small else {"batch_size": (8, lambda r: 8)},
        "Transfer": {"t_lambda": (1.0, _log10u(-2, 1)), "delta": (2.0, _u(0.1, 3.0)),
                     "d_steps_per_g": (10, lambda r: int(r.choice([1, 2, 5]))),
                     "weight_decay_d": (0.0, _log10u(-6, -2)), "gda": (False, lambda r: True),
                     "beta1": (0.5, lambda r: r.choice([0.0, 0.5])),
                     "lr_d": (1e-3, _log10u(-4.5, -2.5))},
        "IB_ERM": ib, "IB_IRM": {**ib, **irm}, "CAD": cad, "CondCAD": cad,
        "CausIRL_CORAL": mmd, "CausIRL_MMD": mmd,
        "EQRM": {"eqrm_quantile": (0.75, _u(0.5, 0.99)),
                 "eqrm_burnin_iters": (2500, _log10u(2.5, 3.5)),
                 "eqrm_lr": (1e-6, _log10u(-7, -5))},
        "RDM": rdm, "URM": urm,
        "ERMPlusPlus": {"linear_lr": (5e-5, _log10u(-5, -3.5))},
    }[algorithm]


def _python(value):
    return value.item() if isinstance(value, np.generic) else value


PART_B = ["MLDG", "SagNet", "ARM", "Transfer", "IB_ERM", "IB_IRM", "CAD", "CondCAD",
          "CausIRL_CORAL", "CausIRL_MMD", "EQRM", "RDM", "URM", "ERMPlusPlus"]


@pytest.mark.parametrize("dataset", ["Debug28", "Debug224", "PACS", "TerraIncognita",
                                     "OfficeHome", "DomainNet"])
@pytest.mark.parametrize("name", PART_B)
def test_part_b_hparams_match_the_documented_distributions(name, dataset):
    expected = _expected_hparams(name, dataset)
    erm_default = hparams_registry.default_hparams("ERM", dataset)
    default = hparams_registry.default_hparams(name, dataset)
    assert set(default) == set(erm_default) | set(expected)  # nothing else declared
    for key, (value, _) in expected.items():
        assert default[key] == value and type(default[key]) is type(value), key
    for seed in (1, 7, 123):
        drawn = hparams_registry.random_hparams(name, dataset, seed)
        erm_drawn = hparams_registry.random_hparams("ERM", dataset, seed)
        for key, (_, draw) in expected.items():
            want = _python(draw(np.random.RandomState(seed_hash(seed, key))))
            assert drawn[key] == want and type(drawn[key]) is type(want), (key, seed)
        assert {k: v for k, v in drawn.items() if k not in expected} == \
            {k: v for k, v in erm_drawn.items() if k not in expected}


def test_eqrm_random_burnin_is_a_float_and_never_resets_adam():
    hp = hparams_registry.random_hparams("EQRM", "PACS", 3)
    assert isinstance(hp["eqrm_burnin_iters"], float)
    assert hp["eqrm_burnin_iters"] != int(hp["eqrm_burnin_iters"])


# ---------------------------------------------------------------- checkpoint round trips

ROUND_TRIP = {
    "MLDG": {"n_meta_test": 1},
    "SagNet": {},
    "ARM": {},
    "Transfer": {"d_steps_per_g": 1},
    "IB_ERM": {"ib_penalty_anneal_iters": 2},
    "IB_IRM": {"irm_penalty_anneal_iters": 1, "ib_penalty_anneal_iters": 2},
    "CAD": {},
    "CondCAD": {},
    "CausIRL_CORAL": {},
    "CausIRL_MMD": {},
    "EQRM": {"eqrm_burnin_iters": 2, "eqrm_lr": 1e-4},
    "RDM": {"rdm_penalty_anneal_iters": 2},
    "URM": {},
    "ERMPlusPlus": {"linear_steps": 1},
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIP))
def test_checkpoint_round_trip_gives_the_same_next_updates(name, tmp_path, one_thread):
    """Save after 2 updates, restore into a differently initialised copy: the next two
    updates (which cross each algorithm's switch step) match the uninterrupted run."""
    original, minibatches = _setup(name, "Debug28", **ROUND_TRIP[name])
    if name == "ERMPlusPlus":
        original.sma_start_iter = 3
    for _ in range(2):
        original.update(minibatches)
    path = str(tmp_path / "checkpoint.safetensors")
    save_checkpoint(path, original, step=2, n_records=0, extra={})
    rng = rng_states()

    torch.manual_seed(99)
    restored = type(original)(_dataset("Debug28").input_shape, original.num_classes,
                              original.num_domains, original.hparams)
    if name == "ERMPlusPlus":
        restored.sma_start_iter = 3
    load_checkpoint(path, restored, "cpu")
    runs = []
    for algorithm in (original, restored):
        set_rng_states(rng)
        runs.append([algorithm.update(minibatches) for _ in range(2)])
    assert runs[0] == runs[1]
    a, b = original.state_dict(), restored.state_dict()
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert original.extra_state() == restored.extra_state()
