"""Every merge rule against an independent reference written here from its paper's definition,
on small random state dicts: continuous values, dyadic values (exact in float32, with sign
ties and ties in magnitude), zero task vectors, one member, a member identical to theta_0;
and the batch-norm policy (frozen statistics kept, counters from the first member)."""

import math

import pytest
import torch

from domainbed.lib.misc import seed_hash
from domainbed_aux.merging import InMemoryData, MergeInputs, get_rule
from domainbed_aux.merging.contract import MergeRule

FLOAT_KEYS = ("layer.weight", "layer.bias", "head.weight")
SHAPES = {"layer.weight": (5, 4), "layer.bias": (5,), "head.weight": (3, 5)}


def base_state(seed=0, dyadic=False):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in SHAPES.items():
        state[key] = (torch.randint(-64, 65, shape, generator=g).float() / 64 if dyadic
                      else torch.randn(shape, generator=g))
    state["bn.running_mean"] = torch.arange(5.0)
    state["bn.running_var"] = torch.full((5,), 2.0)
    state["bn.num_batches_tracked"] = torch.tensor(7)
    return state


def member(theta0, seed, scale=0.1, dyadic=False, counter=None):
    g = torch.Generator().manual_seed(1000 + seed)
    state = dict(theta0)
    for key in FLOAT_KEYS:
        shape = SHAPES[key]
        tau = (torch.randint(-8, 9, shape, generator=g).float() / 32 if dyadic
               else scale * torch.randn(shape, generator=g))
        state[key] = theta0[key] + tau
    state["bn.running_mean"] = theta0["bn.running_mean"].clone()
    state["bn.running_var"] = theta0["bn.running_var"].clone()
    state["bn.num_batches_tracked"] = torch.tensor(counter if counter is not None else seed)
    return state


def sign_tie_members(theta0):
    """Three members whose task vectors cancel exactly on some entries (summed mass 0)."""
    a, b, c = (member(theta0, s, dyadic=True) for s in range(3))
    for key in FLOAT_KEYS:
        tau_a = a[key] - theta0[key]
        b[key] = theta0[key] - tau_a  # exactly opposite to a everywhere
        c[key] = c[key].clone()
        c[key].view(-1)[::2] = theta0[key].view(-1)[::2]  # c is zero on every other entry
    return [a, b, c]


def cases():
    """(name, theta_0, members) covering the cases the rules must handle."""
    t0 = base_state(0)
    d0 = base_state(1, dyadic=True)
    return [
        ("random", t0, [member(t0, s) for s in range(4)]),
        ("dyadic", d0, [member(d0, s, dyadic=True) for s in range(5)]),
        ("sign_ties", d0, sign_tie_members(d0)),
        ("zero_task_vector", t0, [member(t0, 0), dict(t0, **{"bn.num_batches_tracked":
                                                             torch.tensor(3)}),
                                  member(t0, 2)]),
        ("one_member", t0, [member(t0, 5)]),
        ("identical_to_theta0", t0, [dict(t0), dict(t0)]),
    ]


CASES = cases()
CASE_IDS = [c[0] for c in CASES]


def inputs_of(theta0, members, **kw):
    return MergeInputs([(f"m{i}", m) for i, m in enumerate(members)], theta_0=theta0, **kw)


def taus64(theta0, members):
    return [{k: m[k].double() - theta0[k].double() for k in FLOAT_KEYS} for m in members]


def check_policy(state, members):
    """Frozen batch-norm statistics kept, the counter of the first member, float32 back."""
    assert torch.equal(state["bn.running_mean"], members[0]["bn.running_mean"])
    assert torch.equal(state["bn.running_var"], members[0]["bn.running_var"])
    assert int(state["bn.num_batches_tracked"]) == int(members[0]["bn.num_batches_tracked"])
    assert list(state) == list(members[0])
    for key in FLOAT_KEYS:
        assert state[key].dtype == torch.float32


def assert_close(state, expected, atol=1e-6):
    for key in FLOAT_KEYS:
        got = state[key].double()
        assert torch.allclose(got, expected[key], atol=atol, rtol=0), (
            key, float((got - expected[key]).abs().max()))


# ------------------------------------------------------------------------- task arithmetic

@pytest.mark.parametrize("name,theta0,members", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("lam", [0.3, 1.0])
def test_task_arithmetic_is_theta0_plus_lambda_times_the_summed_task_vectors(
        name, theta0, members, lam):
    out = get_rule("task_arithmetic").merge(inputs_of(theta0, members), {"lambda": lam})
    taus = taus64(theta0, members)
    expected = {k: theta0[k].double() + lam * sum(t[k] for t in taus) for k in FLOAT_KEYS}
    assert_close(out.state_dict, expected)
    check_policy(out.state_dict, members)


def test_task_arithmetic_at_one_over_m_is_the_uniform_average():
    t0 = base_state(0)
    members = [member(t0, s) for s in range(4)]
    ta = get_rule("task_arithmetic").merge(inputs_of(t0, members), {"lambda": 0.25})
    uniform = get_rule("uniform").merge(inputs_of(t0, members), {})
    assert_close(ta.state_dict, {k: uniform.state_dict[k].double() for k in FLOAT_KEYS})


# ------------------------------------------------------------------------------------ TIES

def ties_reference(theta0, members, density, lam, transform=None):
    """TIES from the paper: trim each task vector (flattened over every merged tensor) to its
    top ceil(density * n) magnitudes (ties at the threshold kept), elect the sign of the
    summed trimmed vectors, average the trimmed entries that agree with it, scale."""
    taus = taus64(theta0, members)
    if transform is not None:
        taus = [{k: transform(i, k, t[k]) for k in FLOAT_KEYS} for i, t in enumerate(taus)]
    flat = [torch.cat([t[k].reshape(-1) for k in FLOAT_KEYS]) for t in taus]
    n = flat[0].numel()
    trimmed = []
    for v in flat:
        if density >= 1:
            trimmed.append(v.clone())
            continue
        k = math.ceil(density * n)
        threshold = torch.sort(v.abs(), descending=True).values[k - 1]
        trimmed.append(torch.where(v.abs() >= threshold, v, torch.zeros_like(v)))
    elected = torch.sign(sum(trimmed))
    agree_sum = torch.zeros(n, dtype=torch.float64)
    agree_count = torch.zeros(n, dtype=torch.float64)
    for v in trimmed:
        agrees = (torch.sign(v) == elected) & (v != 0)
        agree_sum += torch.where(agrees, v, torch.zeros_like(v))
        agree_count += agrees.double()
    merged = torch.where(agree_count > 0, agree_sum / agree_count.clamp(min=1),
                         torch.zeros_like(agree_sum))
    out, offset = {}, 0
    for key in FLOAT_KEYS:
        size = theta0[key].numel()
        out[key] = theta0[key].double() + lam * merged[offset:offset + size].reshape(
            theta0[key].shape)
        offset += size
    return out


@pytest.mark.parametrize("name,theta0,members", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("density", [0.2, 0.5, 1.0])
def test_ties_equals_its_definition(name, theta0, members, density):
    out = get_rule("ties").merge(inputs_of(theta0, members), {"density": density,
                                                              "lambda": 1.2})
    assert_close(out.state_dict, ties_reference(theta0, members, density, 1.2))
    check_policy(out.state_dict, members)


def test_ties_sign_ties_merge_to_theta0_and_trimming_keeps_the_top_entries():
    d0 = base_state(1, dyadic=True)
    a, b, _ = sign_tie_members(d0)
    out = get_rule("ties").merge(inputs_of(d0, [a, b]), {"density": 1.0, "lambda": 1.0})
    for key in FLOAT_KEYS:  # every entry is a sign tie: exactly theta_0
        assert torch.equal(out.state_dict[key], d0[key])
    t0 = base_state(0)
    one = member(t0, 3)
    out = get_rule("ties").merge(inputs_of(t0, [one]), {"density": 0.2, "lambda": 1.0})
    changed = sum(int((out.state_dict[k] != t0[k]).sum()) for k in FLOAT_KEYS)
    n = sum(t0[k].numel() for k in FLOAT_KEYS)
    assert changed == math.ceil(0.2 * n)  # one member: its top 20% entries, the rest theta_0


# ------------------------------------------------------------------------------------ DARE

def dare_mask_reference(seed, p):
    def transform(index, key, tau):
        g = torch.Generator().manual_seed(seed_hash(seed, "dare", index, key))
        draw = torch.rand(tau.shape, generator=g)
        return torch.where(draw >= p, tau / (1 - p), torch.zeros_like(tau))
    return transform


@pytest.mark.parametrize("name,theta0,members", CASES, ids=CASE_IDS)
def test_dare_linear_is_task_arithmetic_of_dropped_and_rescaled_task_vectors(
        name, theta0, members):
    out = get_rule("dare_linear").merge(inputs_of(theta0, members, seed=3),
                                        {"p": 0.5, "lambda": 0.4})
    drop = dare_mask_reference(3, 0.5)
    taus = taus64(theta0, members)
    expected = {k: theta0[k].double() + 0.4 * sum(drop(i, k, t[k]) for i, t in enumerate(taus))
                for k in FLOAT_KEYS}
    assert_close(out.state_dict, expected)
    check_policy(out.state_dict, members)


@pytest.mark.parametrize("name,theta0,members", CASES, ids=CASE_IDS)
def test_dare_ties_is_ties_of_dropped_and_rescaled_task_vectors(name, theta0, members):
    # p = 0.5 rescales by 2, exact in float32: summed masses that cancel cancel in both
    out = get_rule("dare_ties").merge(inputs_of(theta0, members, seed=1),
                                      {"p": 0.5, "lambda": 1.0, "density": 0.5})
    expected = ties_reference(theta0, members, 0.5, 1.0, dare_mask_reference(1, 0.5))
    assert_close(out.state_dict, expected)


def test_dare_is_seeded_unbiased_and_drops_a_fraction_p():
    t0 = {"w": torch.zeros(200, 200)}
    one = {"w": torch.ones(200, 200)}
    rule = get_rule("dare_linear")
    a = rule.merge(MergeInputs([("a", one)], theta_0=t0, seed=5), {"p": 0.7, "lambda": 1.0})
    b = rule.merge(MergeInputs([("a", one)], theta_0=t0, seed=5), {"p": 0.7, "lambda": 1.0})
    c = rule.merge(MergeInputs([("a", one)], theta_0=t0, seed=6), {"p": 0.7, "lambda": 1.0})
    assert torch.equal(a.state_dict["w"], b.state_dict["w"])
    assert not torch.equal(a.state_dict["w"], c.state_dict["w"])
    w = a.state_dict["w"]
    assert abs(float((w == 0).float().mean()) - 0.7) < 0.01
    assert abs(float(w.mean()) - 1.0) < 0.03  # E[m tau / (1 - p)] = tau
    plain = rule.merge(MergeInputs([("a", one)], theta_0=t0), {"p": 0.0, "lambda": 1.0})
    assert torch.equal(plain.state_dict["w"], one["w"])  # p = 0: task arithmetic


# ------------------------------------------------------------------------------ model stock

def model_stock_reference(theta0, members):
    taus = taus64(theta0, members)
    n = len(members)
    out = {}
    for key in FLOAT_KEYS:
        if n == 1:
            t = 1.0
        else:
            cosines = []
            for i in range(n):
                for j in range(i + 1, n):
                    a, b = taus[i][key].reshape(-1), taus[j][key].reshape(-1)
                    na, nb = float(a.norm()), float(b.norm())
                    cosines.append(float(a @ b) / (na * nb) if na and nb else 0.0)
            cos = min(max(sum(cosines) / len(cosines), 0.0), 1.0)
            t = n * cos / (1 + (n - 1) * cos)
        mean = sum(m[key].double() for m in members) / n
        out[key] = t * mean + (1 - t) * theta0[key].double()
    return out


@pytest.mark.parametrize("name,theta0,members", CASES, ids=CASE_IDS)
def test_model_stock_equals_its_definition(name, theta0, members):
    out = get_rule("model_stock").merge(inputs_of(theta0, members), {})
    assert_close(out.state_dict, model_stock_reference(theta0, members))
    check_policy(out.state_dict, members)


def test_model_stock_ratio_follows_the_angle():
    t0 = {"w": torch.zeros(3)}
    same = [{"w": torch.tensor([1.0, 0.0, 0.0])}, {"w": torch.tensor([2.0, 0.0, 0.0])}]
    orthogonal = [{"w": torch.tensor([1.0, 0.0, 0.0])}, {"w": torch.tensor([0.0, 1.0, 0.0])}]
    rule = get_rule("model_stock")
    # parallel task vectors: t = 1, the members' mean
    assert torch.allclose(rule.merge(MergeInputs(list(enumerate_ids(same)), theta_0=t0), {})
                          .state_dict["w"], torch.tensor([1.5, 0.0, 0.0]))
    # orthogonal: t = 0, theta_0
    assert torch.equal(rule.merge(MergeInputs(list(enumerate_ids(orthogonal)), theta_0=t0),
                                  {}).state_dict["w"], torch.zeros(3))


def enumerate_ids(members):
    return [(f"m{i}", m) for i, m in enumerate(members)]


# ------------------------------------------------------------------------------------ SLERP

def slerp_reference(a, b, t):
    a, b = a.double().reshape(-1), b.double().reshape(-1)
    if a.norm() == 0 or b.norm() == 0:
        return (1 - t) * a + t * b
    omega = math.acos(max(-1.0, min(1.0, float(a @ b / (a.norm() * b.norm())))))
    if math.sin(omega) < 1e-6:  # (anti)parallel: linear interpolation
        return (1 - t) * a + t * b
    return (math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)


@pytest.mark.parametrize("name,theta0,members", [c for c in CASES if len(c[2]) >= 2],
                         ids=[c[0] for c in CASES if len(c[2]) >= 2])
@pytest.mark.parametrize("t", [0.25, 0.5])
def test_slerp_interpolates_the_task_vectors_of_the_two_best_members(name, theta0, members, t):
    accs = {f"m{i}": 0.5 + 0.01 * ((3 * i) % len(members)) for i in range(len(members))}
    ranked = sorted(range(len(members)), key=lambda i: (-accs[f"m{i}"], f"m{i}"))
    a, b = members[ranked[0]], members[ranked[1]]
    out = get_rule("slerp").merge(inputs_of(theta0, members, val_acc_of_member=accs), {"t": t})
    expected = {k: theta0[k].double() + slerp_reference(a[k] - theta0[k], b[k] - theta0[k], t)
                .reshape(theta0[k].shape) for k in FLOAT_KEYS}
    assert_close(out.state_dict, expected)
    assert out.members == [f"m{ranked[0]}", f"m{ranked[1]}"]


def test_slerp_of_equal_norms_keeps_the_norm_and_lerps_parallel_vectors():
    t0 = {"w": torch.zeros(2)}
    out = get_rule("slerp").merge(MergeInputs([("a", {"w": torch.tensor([1.0, 0.0])}),
                                               ("b", {"w": torch.tensor([0.0, 1.0])})],
                                              theta_0=t0), {"t": 0.5})
    assert torch.allclose(out.state_dict["w"], torch.tensor([1.0, 1.0]) / math.sqrt(2))
    out = get_rule("slerp").merge(MergeInputs([("a", {"w": torch.tensor([1.0, 0.0])}),
                                               ("b", {"w": torch.tensor([3.0, 0.0])})],
                                              theta_0=t0), {"t": 0.5})
    assert torch.allclose(out.state_dict["w"], torch.tensor([2.0, 0.0]))


def log_map(p, x):
    cos = max(-1.0, min(1.0, float(p @ x)))
    angle = math.acos(cos)
    return torch.zeros_like(p) if angle < 1e-15 else (x - cos * p) * angle / math.sin(angle)


@pytest.mark.parametrize("name,theta0,members", CASES, ids=CASE_IDS)
def test_slerp_tangent_is_the_spherical_mean_direction_at_the_mean_norm(name, theta0, members):
    out = get_rule("slerp_tangent").merge(inputs_of(theta0, members), {})
    taus = taus64(theta0, members)
    for key in FLOAT_KEYS:
        got = out.state_dict[key].double().reshape(-1) - theta0[key].double().reshape(-1)
        norms = [float(t[key].norm()) for t in taus]
        assert float(got.norm()) == pytest.approx(sum(norms) / len(norms), abs=1e-5)
        units = [t[key].reshape(-1) / t[key].norm() for t in taus if t[key].norm() > 0]
        if not units:
            assert float(got.norm()) == 0
            continue
        direction = got / got.norm()
        # the spherical (Karcher) mean: the mean of the log maps there vanishes
        gradient = sum(log_map(direction, u) for u in units) / len(units)
        assert float(gradient.norm()) < 1e-5, (key, float(gradient.norm()))


def test_slerp_tangent_of_two_equal_norms_is_slerp_at_one_half():
    t0 = base_state(0)
    a = member(t0, 1)
    b = dict(a)
    for key in FLOAT_KEYS:  # b: another direction, the norm of a
        other = member(t0, 2)[key] - t0[key]
        b[key] = t0[key] + other * (a[key] - t0[key]).norm() / other.norm()
    tangent = get_rule("slerp_tangent").merge(inputs_of(t0, [a, b]), {})
    slerp = get_rule("slerp").merge(inputs_of(t0, [a, b]), {"t": 0.5})
    assert_close(tangent.state_dict, {k: slerp.state_dict[k].double() for k in FLOAT_KEYS},
                 atol=2e-6)


# ---------------------------------------------------------------------------- data-aware rules

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.featurizer = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh())
        self.classifier = torch.nn.Linear(6, 3)
        self.network = torch.nn.Sequential(self.featurizer, self.classifier)  # aliases

    def predict(self, x):
        return self.network(x)


def net_state(seed):
    torch.manual_seed(seed)
    return Net().state_dict()


def make_net(state):
    net = Net()
    net.load_state_dict(state)
    return net.eval()


def data_and_members(n_members=3, n=24, shared_featurizer=False):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(n, 4, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    members = [net_state(i) for i in range(n_members)]
    if shared_featurizer:
        for m in members[1:]:
            for key in m:
                if key.startswith(("featurizer", "network.0")):
                    m[key] = members[0][key]
    return InMemoryData(make_net, x, y, batch_size=10), members, x, y


def fisher_reference(members, x, y, floor):
    """theta = sum_i (F_i + eps) theta_i / sum_i (F_i + eps), F_i the mean over examples of
    the squared gradient of log p(y|x) at member i (autograd, one example at a time)."""
    fishers = []
    for state in members:
        net = make_net(state)
        params = dict(net.named_parameters())
        squares = {k: torch.zeros_like(p, dtype=torch.float64) for k, p in params.items()}
        for i in range(len(x)):
            logp = torch.log_softmax(net.predict(x[i:i + 1]), 1)[0, y[i]]
            grads = torch.autograd.grad(logp, list(params.values()))
            for (k, _), g in zip(params.items(), grads):
                squares[k] += g.double() ** 2
        fishers.append({k: v / len(x) for k, v in squares.items()})
    out = {}
    for key in fishers[0]:
        num = sum((f[key] + floor) * m[key].double() for f, m in zip(fishers, members))
        den = sum(f[key] + floor for f in fishers)
        out[key] = num / den
    return out


@pytest.mark.parametrize("n_members", [1, 3])
def test_fisher_merging_weights_each_parameter_by_the_members_empirical_fisher(
        one_thread, n_members):
    data, members, x, y = data_and_members(n_members)
    out = get_rule("fisher").merge(
        MergeInputs([(f"m{i}", m) for i, m in enumerate(members)], data=data),
        {"n_examples": 24, "fisher_floor": 1e-8})
    expected = fisher_reference(members, x, y, 1e-8)
    for key, value in expected.items():
        assert torch.allclose(out.state_dict[key].double(), value, atol=1e-5, rtol=1e-4), key
        alias = key.replace("featurizer.", "network.0.").replace("classifier.", "network.1.")
        assert out.state_dict[alias] is out.state_dict[key]  # aliases share their tensor


def regmean_reference(members, x, alpha):
    """Per linear layer: the least-squares fit W = (sum G_i)^-1 sum G_i W_i (G_i the Gram
    matrix of the layer's inputs in member i, with a column of ones for the bias, its
    off-diagonal scaled by alpha), solved by numpy-free float64 least squares; other
    tensors: the mean."""
    out = {k: sum(m[k].double() for m in members) / len(members) for k in members[0]}
    for prefix in ("featurizer.0", "classifier"):
        grams, cross = 0, 0
        for state in members:
            net = make_net(state)
            inputs = x if prefix == "featurizer.0" else net.featurizer(x)
            xt = torch.cat([inputs.double(), torch.ones(len(x), 1, dtype=torch.float64)], 1)
            gram = xt.T @ xt
            gram = alpha * gram + (1 - alpha) * torch.diag(torch.diagonal(gram))
            w = torch.cat([state[f"{prefix}.weight"].double(),
                           state[f"{prefix}.bias"].double()[:, None]], 1)
            grams = grams + gram
            cross = cross + gram @ w.T
        fitted = torch.linalg.lstsq(grams, cross).solution.T
        out[f"{prefix}.weight"] = fitted[:, :-1]
        out[f"{prefix}.bias"] = fitted[:, -1]
    return out


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_regmean_fits_each_linear_layer_to_the_members_outputs(alpha):
    data, members, x, _ = data_and_members(3)
    out = get_rule("regmean").merge(
        MergeInputs([(f"m{i}", m) for i, m in enumerate(members)], data=data),
        {"alpha": alpha, "n_examples": 24})
    expected = regmean_reference(members, x, alpha)
    for key in ("featurizer.0.weight", "featurizer.0.bias", "classifier.weight",
                "classifier.bias"):
        assert torch.allclose(out.state_dict[key].double(), expected[key], atol=1e-5), key


def test_regmean_of_heads_on_shared_features_is_their_mean_and_of_one_member_itself():
    data, members, _, _ = data_and_members(3, shared_featurizer=True)
    out = get_rule("regmean").merge(
        MergeInputs([(f"m{i}", m) for i, m in enumerate(members)], data=data),
        {"alpha": 1.0, "n_examples": 24})
    mean = sum(m["classifier.weight"] for m in members) / 3
    assert torch.allclose(out.state_dict["classifier.weight"], mean, atol=1e-5)
    one = get_rule("regmean").merge(MergeInputs([("a", members[1])], data=data),
                                    {"alpha": 0.9, "n_examples": 24})
    for key, value in members[1].items():
        assert torch.allclose(one.state_dict[key], value, atol=1e-5), key


# ------------------------------------------------------------------------------ every rule

def data_free_rules():
    from domainbed_aux.merging import rule_names
    names = []
    for name in rule_names():
        rule = get_rule(name)
        if not rule.needs - {"theta_0", "member_val_acc"} and rule.min_members <= 1:
            names.append(name)
    return names


@pytest.mark.parametrize("name", data_free_rules())
def test_every_rule_merging_copies_of_theta0_gives_theta0(name):
    t0 = base_state(0)
    out = get_rule(name).merge(inputs_of(t0, [dict(t0), dict(t0), dict(t0)],
                                         val_acc_of_member={"m0": 1, "m1": 1, "m2": 1}),
                               get_rule(name).defaults())
    for key in FLOAT_KEYS:
        assert torch.allclose(out.state_dict[key], t0[key], atol=1e-6), (name, key)


def test_the_rules_declare_their_contract():
    from domainbed_aux.merging import NEEDS, rule_names
    for name in rule_names():
        rule = get_rule(name)
        assert isinstance(rule, MergeRule) and rule.name == name
        assert rule.title and rule.source and rule.definition and rule.memory, name
        assert rule.needs <= set(NEEDS), name
        for h in rule.hparams:
            assert h.values()[0] == h.default and len(set(map(str, h.values()))) == len(
                h.values()), (name, h)
