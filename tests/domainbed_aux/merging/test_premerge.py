"""Checks before merging: the pairwise geometry equals a direct computation; the collapse
warning fires on a constructed collapse (two runs recorded 100x apart in learning rate whose
average falls apart) and stays quiet on runs trained from one mild space."""

import json
import math

import pytest
import torch

from domainbed_aux.merging import MergeInputs
from domainbed_aux.merging.premerge import format_checks, premerge_checks


class MLP(torch.nn.Module):
    def __init__(self, hidden=16):
        super().__init__()
        self.featurizer = torch.nn.Sequential(torch.nn.Linear(2, hidden), torch.nn.ReLU())
        self.classifier = torch.nn.Linear(hidden, 2)

    def forward(self, x):
        return self.classifier(self.featurizer(x))


def task(n=400, seed=0):
    """Two classes of 2-D points inside / outside a circle (a nonlinear boundary)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g) * 4 - 2
    y = (x.norm(dim=1) < 1.2).long()
    return x, y


def accuracy(state, x, y):
    net = MLP()
    net.load_state_dict(state)
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())


def train(init, lr, steps, x, y, seed):
    torch.manual_seed(seed)
    net = MLP()
    net.load_state_dict(init)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def trained(request):
    torch.set_num_threads(1)
    x, y = task(seed=0)
    xv, yv = task(seed=1)
    torch.manual_seed(0)
    theta0 = MLP().state_dict()
    base = train(theta0, 0.05, 400, x, y, seed=0)  # a good network
    return x, y, xv, yv, theta0, base


def permuted(state, seed=3):
    """The same function with its hidden units in another order."""
    perm = torch.randperm(state["featurizer.0.weight"].shape[0],
                          generator=torch.Generator().manual_seed(seed))
    out = dict(state)
    out["featurizer.0.weight"] = state["featurizer.0.weight"][perm]
    out["featurizer.0.bias"] = state["featurizer.0.bias"][perm]
    out["classifier.weight"] = state["classifier.weight"][:, perm]
    return out


def test_the_pairwise_matrices_equal_a_direct_computation(trained):
    *_, theta0, base = trained
    members = [base, permuted(base), {k: v + 0.01 for k, v in base.items()}]
    checks = premerge_checks(MergeInputs([(f"m{i}", m) for i, m in enumerate(members)],
                                         theta_0=theta0))
    flat = [torch.cat([m[k].double().reshape(-1) for k in sorted(m)]) for m in members]
    ref = torch.cat([theta0[k].double().reshape(-1) for k in sorted(theta0)])
    for i in range(3):
        for j in range(3):
            assert checks["distances"][i][j] == pytest.approx(float((flat[i] - flat[j]).norm()),
                                                              abs=1e-9)
            a, b = flat[i] - ref, flat[j] - ref
            assert checks["cosines"][i][j] == pytest.approx(
                float(a @ b / (a.norm() * b.norm())), abs=1e-9)
    assert checks["reference"] == "theta_0" and checks["warning"] is None
    assert checks["midpoint"] is None  # nothing to evaluate without evaluate
    without = premerge_checks(MergeInputs([(f"m{i}", m) for i, m in enumerate(members)]))
    assert without["cosines"] is None and without["reference"] == "member m0"
    assert without["distances"][0][1] == pytest.approx(checks["distances"][0][1], abs=1e-9)


def test_a_constructed_collapse_warns_naming_the_learning_rates_and_the_members(trained):
    *_, xv, yv, theta0, base = trained
    # run_b: the same network as run_a with its hidden units permuted (what a run with a
    # learning rate 100x larger can end as: as accurate, in another basin); their average
    # falls apart
    members = [("run_a", base), ("run_b", permuted(base))]
    info = {"run_a": {"lr": 1e-4, "step": 400}, "run_b": {"lr": 1e-2, "step": 400}}
    checks = premerge_checks(MergeInputs(members, theta_0=theta0,
                                         evaluate=lambda s: accuracy(s, xv, yv)), info)
    assert checks["uniform"]["members_mean"] > 0.9
    assert checks["uniform"]["id_val"] < checks["uniform"]["members_mean"] - 0.1
    warning = checks["warning"]
    assert warning is not None and "\n" not in warning
    assert warning.startswith("warning: the uniform average of 2 runs scores")
    assert "learning rates 100x apart (0.0001 for run_a, 0.01 for run_b)" in warning
    assert "most distant members: run_a and run_b" in warning
    assert checks["midpoint"]["members"] == ["run_a", "run_b"]
    assert checks["midpoint"]["gain"] < -0.1
    assert warning in format_checks(checks)
    json.dumps(checks)  # JSON-ready


def test_runs_of_one_mild_space_stay_quiet(trained):
    x, y, xv, yv, theta0, base = trained
    # fine-tunings of one network with learning rates of one mild range (2x apart)
    members = [(f"run{i}", train(base, lr, 100, x, y, seed=10 + i))
               for i, lr in enumerate((0.01, 0.015, 0.02))]
    info = {m: {"lr": lr, "step": 100} for (m, _), lr in zip(members, (0.01, 0.015, 0.02))}
    checks = premerge_checks(MergeInputs(members, theta_0=base,
                                         evaluate=lambda s: accuracy(s, xv, yv)), info)
    assert checks["warning"] is None
    assert checks["uniform"]["gain"] > -0.01
    assert all(0 < c <= 1 + 1e-9 for row in checks["cosines"] for c in row)
    assert not any("warning" in line for line in format_checks(checks))


def test_the_cause_is_the_steps_when_checkpoints_are_far_apart_and_basins_otherwise(trained):
    *_, xv, yv, theta0, base = trained
    members = [("a", base), ("b", permuted(base))]
    evaluate = lambda s: accuracy(s, xv, yv)  # noqa: E731
    steps = premerge_checks(MergeInputs(members, theta_0=theta0, evaluate=evaluate),
                            {"a": {"lr": 1e-3, "step": 100}, "b": {"lr": 1e-3, "step": 5000}})
    assert "checkpoints 50x apart in steps (100 for a, 5000 for b)" in steps["warning"]
    basins = premerge_checks(MergeInputs(members, theta_0=theta0, evaluate=evaluate))
    assert "likely cause: the runs ended in different basins" in basins["warning"]


def test_runs_cli_print_the_checks_and_write_them(probe_sweep, tmp_path, capsys, one_thread):
    from domainbed_aux.scripts import inference as inference_cli
    out = tmp_path / "inference.json"
    assert inference_cli.main(["--dataset", "ImageFolder", "--test_env", "0", "--input_dir",
                               probe_sweep.erm_dir, "--weight_selection", "uniform",
                               "--output", str(out), "--no_progress", "--plot"]) == 0
    printed = capsys.readouterr().out
    assert "checks before merging (ID validation):" in printed
    assert "task-vector cosine: min" in printed and "midpoint of the most distant pair" in printed
    data = json.loads(out.read_text())
    checks = data["checks"]
    assert checks["reference"] == "theta_0" and checks["theta_0"] == probe_sweep.probe
    assert len(checks["cosines"]) == 3 and checks["warning"] is None
    assert all(math.isfinite(d) for row in checks["distances"] for d in row)
    assert (tmp_path / "inference_checks.png").stat().st_size > 0


def test_the_warning_reaches_inference_merge_and_the_report(tmp_path, capsys, monkeypatch,
                                                            caplog):
    """Two hand-made runs recorded 100x apart in learning rate, scored by a stand-in for ID
    validation under which each run is accurate and any average of them is not."""
    from domainbed_aux.scoring.evaluation import RunEvaluator
    from domainbed_aux.scripts import inference as inference_cli
    from domainbed_aux.scripts import merge as merge_cli
    from domainbed_aux.scripts import report as report_cli
    from tests.fixtures.runs import make_run, random_state
    runs = {}
    for name, lr, seed in (("run_slow", 1e-5, 1), ("run_fast", 1e-3, 2)):
        path = make_run(str(tmp_path / "sweep" / name), random_state(seed), hparams_seed=seed)
        with open(f"{path}/results.jsonl") as f:
            record = json.loads(f.readline())
        record["hparams"]["lr"] = lr
        with open(f"{path}/results.jsonl", "w") as f:
            f.write(json.dumps(record) + "\n")
        runs[name] = random_state(seed)["classifier.weight"]

    def accuracy(self, state, split):
        head = state["classifier.weight"]
        return 0.9 if any(torch.equal(head, w) for w in runs.values()) else 0.2
    monkeypatch.setattr(RunEvaluator, "accuracy", accuracy)
    common = ["--dataset", "Debug28", "--test_env", "0", "--input_dir", str(tmp_path / "sweep"),
              "--no_progress"]
    expected = "learning rates 100x apart (1e-05 for run_slow, 0.001 for run_fast)"
    assert inference_cli.main(common + ["--output", str(tmp_path / "i.json")]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("warning:")]
    assert len(lines) == 1 and expected in lines[0]
    assert merge_cli.main(common + ["--output_dir", str(tmp_path / "model")]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("warning:")]
    assert len(lines) == 1 and expected in lines[0]
    merge = json.loads((tmp_path / "model" / "merge.json").read_text())
    assert expected in merge["checks"]["warning"]
    assert report_cli.main(["--input_dir", str(tmp_path / "sweep"), "--no_cache",
                            "--no_progress"]) == 0
    captured = capsys.readouterr()
    assert "1 cells checked" in captured.out and "1 warning:" in captured.out
    assert "Debug28/Model soups/env0/0: warning: the uniform average of 2 runs" in captured.out
    assert any(expected in r.getMessage() for r in caplog.records
               if r.name == "domainbed_aux.report")  # logged as well
