"""Analysis tools: diversity statistics, interpolation curves, WiSE-FT, ablations, plots."""

import json
import math
from types import SimpleNamespace

import pytest
import torch

from domainbed_aux.analysis import ablations, diversity, lmc, plots
from domainbed_aux.scripts import analysis as cli

# -- diversity (hand-computed) ---------------------------------------------------------------


def test_q_diversity_and_ratio_error_match_hand_computed_values():
    a = [1, 1, 1, 0, 0, 1, 0, 1]
    b = [1, 0, 1, 0, 1, 1, 0, 0]
    counts = diversity.error_counts(a, b)
    assert counts == {"n11": 3, "n10": 2, "n01": 1, "n00": 2}
    # Q = (3*2 - 1*2) / (3*2 + 1*2) = 0.5
    assert diversity.q_statistic(counts) == pytest.approx(0.5)
    assert diversity.q_diversity(counts) == pytest.approx(0.5)
    assert diversity.ratio_error(counts) == pytest.approx(1.5)  # (1 + 2) / 2


def test_zero_denominators():
    both_right = diversity.pair_diversity([1, 1, 1], [1, 1, 1])
    assert both_right["q_diversity"] is None and both_right["ratio_error"] is None
    assert len(both_right["notes"]) == 2
    # never wrong together: Q = -1 (1 - Q = 2), ratio-error infinite
    counts = diversity.error_counts([1, 0], [0, 1])
    assert diversity.q_diversity(counts) == pytest.approx(2.0)
    assert math.isinf(diversity.ratio_error(counts))
    pair = diversity.pair_diversity([1, 0], [0, 1])
    assert pair["ratio_error"] is None and "infinite" in pair["notes"][0]
    with pytest.raises(Exception, match="same split"):
        diversity.error_counts([1, 0], [1])


def test_pairwise_matrix_is_symmetric_with_zero_diagonal():
    correct = [[1, 1, 0, 0, 1], [1, 0, 1, 0, 1], [0, 1, 1, 0, 0]]
    m = diversity.pairwise(correct)
    for key in ("q_diversity", "ratio_error"):
        for i in range(3):
            for j in range(3):
                assert m[key][i][j] == m[key][j][i]
    assert all(m["q_diversity"][i][i] == 0.0 for i in range(3))
    pair = diversity.pair_diversity(correct[0], correct[2])
    assert m["q_diversity"][0][2] == pair["q_diversity"]


# -- interpolation (pure) --------------------------------------------------------------------


def _score(state):
    return float(state["w"].mean())


def test_curve_on_known_weights_and_midpoint_summary():
    a, b = {"w": torch.zeros(3)}, {"w": torch.full((3,), 0.8)}
    result = lmc.curve(_score, a, b, lmc.lambda_grid(5))
    assert result["accuracies"] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert result["midpoint_acc"] == pytest.approx(0.4)
    assert result["endpoints_mean_acc"] == pytest.approx(0.4)
    assert result["midpoint_gain"] == pytest.approx(0.0)
    assert lmc.mix([a, b], [0.0, 1.0])["w"] is b["w"]  # endpoints are the weights themselves


def test_three_way_grid_covers_the_simplex():
    points = lmc.simplex_grid(4)
    assert len(points) == 15 and all(sum(p) == pytest.approx(1.0) for p in points)
    states = [{"w": torch.tensor([0.0])}, {"w": torch.tensor([0.5])}, {"w": torch.tensor([1.0])}]
    result = lmc.three_way(_score, states, 4)
    assert result["corner_accs"] == pytest.approx([0.0, 0.5, 1.0])
    assert result["center_acc"] == pytest.approx(0.5)
    assert result["best_point"] == [0.0, 0.0, 1.0]


def test_parse_grid_errors():
    assert lmc.parse_grid("0, 0.5,1") == [0.0, 0.5, 1.0]
    with pytest.raises(Exception, match="comma-separated"):
        lmc.parse_grid("0;1")


# -- ablation subsets (pure) -----------------------------------------------------------------


def _fake_run(i, kind, dataset=None):
    member = None if kind == "pretrained" else {"kind": kind, "dataset": dataset}
    return SimpleNamespace(run_dir=f"r{i}", model_path=f"r{i}/m", order_key=(0, i, f"r{i}"),
                           init={"member": member} if member else None)


def test_ablation_subsets_are_deterministic_and_well_formed():
    runs = [_fake_run(0, "pretrained"), _fake_run(1, "pretrained"), _fake_run(2, "aux", "A"),
            _fake_run(3, "aux", "A"), _fake_run(4, "aux", "B"), _fake_run(5, "aux", "C")]
    by_tasks = ablations.subsets(runs, "n_aux_tasks", seed=3)
    assert [v for v, _ in by_tasks] == [0, 1, 2, 3]
    assert [len(d[0]) for _, d in by_tasks][0] == 2 and len(by_tasks[-1][1][0]) == 6
    assert by_tasks == ablations.subsets(runs, "n_aux_tasks", seed=3)
    share = ablations.subsets(runs, "aux_share", n_total=2)
    assert [v for v, _ in share] == [0.0, 0.5, 1.0]
    for value, (draw,) in share:
        n_aux = sum(ablations.init_member(r)[0] != "pretrained" for r in draw)
        assert len(draw) == 2 and n_aux == round(value * 2)
    result = ablations.ablate(runs, "n_runs", score=len, n_repeats=2)
    assert result["values"] == [1, 2, 3, 4, 5, 6]
    assert result["accuracies"] == [1, 2, 3, 4, 5, 6]
    with pytest.raises(Exception, match="n_total"):
        ablations.subsets(runs, "aux_share", n_total=3)


# -- plots -----------------------------------------------------------------------------------


def test_plots_have_labelled_axes_and_are_written(tmp_path):
    import matplotlib  # noqa: F401  (the "test" extra installs it: this must not skip)
    path = tmp_path / "curve.png"
    fig = plots.plot_curves([0, 0.5, 1], {"a": [0.5, 0.6, None]}, xlabel="lambda",
                            ylabel="accuracy (%)", title="t", path=str(path))
    ax = fig.axes[0]
    assert ax.get_xlabel() == "lambda" and ax.get_ylabel() == "accuracy (%)"
    assert ax.get_title() == "t" and ax.get_legend() is not None
    assert path.stat().st_size > 0
    fig = plots.plot_simplex(lmc.simplex_grid(2), [0.1] * 6, ["a", "b", "c"], title="s",
                             colorbar_label="acc", path=str(tmp_path / "s.png"))
    assert fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel()
    fig = plots.plot_matrix([[0.0, None], [None, 0.0]], ["x", "y"], title="m",
                            colorbar_label="1 - Q", path=str(tmp_path / "m.png"))
    assert fig.axes[0].get_xlabel() == "run"


# -- on real runs (Debug28) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from domainbed.scripts import train as train_script
    root = tmp_path_factory.mktemp("runs")
    runs = []
    for seed in (0, 1):
        out = root / "sweep" / f"run{seed}"
        assert train_script.main([
            "--dataset", "Debug28", "--steps", "9", "--checkpoint_freq", "2",
            "--seed", str(seed), "--output_dir", str(out),
            "--hparams", json.dumps({"batch_size": 8, "backbone": "tiny_cnn"})]) == 0
        runs.append(str(out))
    return root, runs


def _last_record(run):
    with open(f"{run}/results.jsonl") as f:
        return [json.loads(line) for line in f][-1]


def _best_record(run):
    """The record of the run's best-ID-validation checkpoint (what WiSE-FT and soups use)."""
    from domainbed_aux.scoring.runs import read_run
    return read_run(run).selected_record


def _pool_member(run, path):
    """A pool member file as the pool writes it: the run's best featurizer, unprefixed keys,
    ``pool_member`` metadata."""
    from domainbed.lib.weights import load_file, save_weights
    content, _ = load_file(f"{run}/model_best.safetensors")
    featurizer = {k[len("featurizer."):]: v for k, v in content.items()
                  if k.startswith("featurizer.")}
    save_weights(str(path), featurizer, metadata={"pool_member": {"dataset": "Debug28"}})
    return str(path)


@pytest.mark.slow
def test_lmc_endpoints_reproduce_run_accuracies(two_runs, tmp_path):
    _, (run_a, run_b) = two_runs
    # the fixture's runs peak before their last step: best and final weights differ
    assert _best_record(run_a)["step"] != _last_record(run_a)["step"]
    out = tmp_path / "lmc.json"
    assert cli.main(["lmc", "--run_a", run_a, "--run_b", run_b, "--lambdas", "0,0.5,1",
                     "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    # a run directory means the weights soups average: its best ID-validation checkpoint
    assert result["weights"] == "best"
    assert result["accuracies"][0] == pytest.approx(_best_record(run_a)["env0_in_acc"])
    assert result["accuracies"][-1] == pytest.approx(_best_record(run_b)["env0_in_acc"])
    assert result["midpoint_acc"] == result["accuracies"][1]
    assert (tmp_path / "lmc.png").exists()
    assert cli.main(["lmc", "--run_a", run_a, "--run_b", run_b, "--lambdas", "0,1",
                     "--weights", "final", "--output", str(out), "--no_plot"]) == 0
    result = json.loads(out.read_text())
    assert result["accuracies"][0] == pytest.approx(_last_record(run_a)["env0_in_acc"])

    # featurizers under a fixed head; a pool member file is a featurizer source
    member = _pool_member(run_a, tmp_path / "member.safetensors")
    out = tmp_path / "feat.json"
    assert cli.main(["lmc", "--featurizer_a", member, "--featurizer_b", run_b, "--head", run_a,
                     "--lambdas", "0,1", "--output", str(out), "--no_plot"]) == 0
    result = json.loads(out.read_text())
    assert result["mode"] == "featurizer"
    assert result["accuracies"][0] == pytest.approx(_best_record(run_a)["env0_in_acc"])
    assert not (tmp_path / "feat.png").exists()


@pytest.mark.slow
def test_diversity_wise_ft_and_ablations_on_runs(two_runs, tmp_path):
    root, (run_a, run_b) = two_runs
    out = tmp_path / "div.json"
    assert cli.main(["diversity", "--runs", run_a, run_b, "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    pair = result["pairs"][0]
    assert pair["n11"] + pair["n10"] + pair["n01"] + pair["n00"] == result["n_examples"]
    acc_a = (pair["n11"] + pair["n10"]) / result["n_examples"]
    assert acc_a == pytest.approx(_best_record(run_a)["env0_in_acc"])
    assert (tmp_path / "div.png").exists()
    # weight files too (a best checkpoint), scored on the splits of the first run directory
    assert cli.main(["diversity", "--runs", f"{run_a}/model_best.safetensors", run_b,
                     f"{run_a}/model.safetensors", "--output", str(out), "--no_plot"]) == 0
    result = json.loads(out.read_text())
    assert result["reference_run"] == run_b
    first = result["pairs"][0]
    assert (first["n11"] + first["n10"]) / result["n_examples"] == pytest.approx(
        _best_record(run_a)["env0_in_acc"])
    last = result["pairs"][1]  # (model_best of a, model of a)
    assert (last["n11"] + last["n01"]) / result["n_examples"] == pytest.approx(
        _last_record(run_a)["env0_in_acc"])

    out = tmp_path / "wise.json"
    assert cli.main(["wise_ft", "--run_dir", run_a, "--init", f"{run_b}/model.safetensors",
                     "--alphas", "0,0.5,1", "--output", str(out)]) == 0
    curves = json.loads(out.read_text())["accuracies"]
    assert curves["test_in"][0] == pytest.approx(_best_record(run_a)["env0_in_acc"])
    assert curves["test_in"][-1] == pytest.approx(_last_record(run_b)["env0_in_acc"])
    assert len(curves["id_val"]) == 3
    # without an init file, a small CNN has no pretrained weights to go back to
    assert cli.main(["wise_ft", "--run_dir", run_a, "--output", str(out)]) == 1

    out = tmp_path / "abl.json"
    assert cli.main(["ablations", "--input_dir", str(root / "sweep"), "--ablation", "n_runs",
                     "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["values"] == [1, 2] and len(result["accuracies"]) == 2
    assert result["accuracies"][0] in (pytest.approx(_best_record(run_a)["env0_in_acc"]),
                                       pytest.approx(_best_record(run_b)["env0_in_acc"]))
    assert (tmp_path / "abl.png").exists()
