"""Soups of run directories: arithmetic, greedy order, dagger, the scored split, bad input."""

import json
import os
import shutil

import pytest

from domainbed import datasets
from domainbed.errors import DomainBedError
from domainbed_aux.scoring.evaluation import EvaluatorCache
from domainbed_aux.scoring.runs import find_runs, read_run
from domainbed_aux.scripts import inference
from domainbed_aux.scoring.soups import soup
from tests.fixtures.runs import (_hparams, make_run, manual_model, manual_pooled,
                                 manual_splits, mean_state, random_state)


# -- hand-made runs: exact weights, chosen ID-validation accuracies -------------------------


# -- tests ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_uniform_soup_equals_hand_averaged_model(tmp_path):
    states = [random_state(s) for s in range(3)]
    for i, state in enumerate(states):
        make_run(tmp_path / f"r{i}", state)
    runs = find_runs([str(tmp_path)])
    result = soup(runs, "uniform", splits=["test_in", "id_val", "test_full"])
    model = manual_model(mean_state(states))
    splits = manual_splits(0)
    assert result["members"] == [str(tmp_path / f"r{i}") for i in range(3)]
    assert result["accuracies"]["test_in"] == pytest.approx(
        manual_pooled(model, [splits.eval_in[0]]), abs=1e-12)
    assert result["accuracies"]["id_val"] == pytest.approx(
        manual_pooled(model, [splits.eval_out[1], splits.eval_out[2]]), abs=1e-12)
    full = datasets.get_dataset_class("Debug28")("none", [0], _hparams())[0]
    assert result["accuracies"]["test_full"] == pytest.approx(manual_pooled(model, [full]))
    assert result["bn"] == "no batch-norm layer" and not result["bn_recomputed"]


@pytest.mark.slow
def test_greedy_orders_by_id_val_with_tie_break_by_run_dir(tmp_path):
    accs = {"a": (0.5, 0.5), "b": (0.9, 0.9), "c": (0.8, 1.0), "d": (0.1, 0.1)}
    states = {name: random_state(i) for i, name in enumerate(accs)}
    for name, val in accs.items():
        make_run(tmp_path / name, states[name], val_accs=val)
    runs = find_runs([str(tmp_path)])
    result = soup(runs, "greedy", splits=["test_in"])
    order = [os.path.basename(m) for m in result["candidates"]]
    assert order == ["b", "c", "a", "d"]  # b and c tie at 0.9: the smaller path first
    trace = result["trace"]
    splits = manual_splits(0)
    id_val = [splits.eval_out[1], splits.eval_out[2]]
    # the first candidate's soup is the run alone, scored on the pooled ID-validation split
    assert trace[0]["soup_acc"] == pytest.approx(manual_pooled(manual_model(states["b"]),
                                                                id_val))
    kept = [os.path.basename(m) for m in result["members"]]
    for step in trace[1:]:
        if step["kept"]:
            assert step["soup_acc"] >= trace[0]["soup_acc"] - 1.0  # recorded, finite
    final = manual_model(mean_state([states[k] for k in kept]))
    assert result["val_acc"] == pytest.approx(manual_pooled(final, id_val))
    assert result["accuracies"]["test_in"] == pytest.approx(
        manual_pooled(final, [splits.eval_in[0]]))


@pytest.mark.slow
def test_run_order_and_greedy_ties_do_not_depend_on_directory_names(tmp_path):
    """A run directory's name hashes flags that change only what is evaluated (e.g.
    --full_evaluation): runs are ordered by what they train, so the soups of the same
    runs under other names are the same (ties used to follow the names)."""
    states = [random_state(20 + i) for i in range(3)]
    results = []
    for names in (["a", "b", "c"], ["c", "b", "a"]):
        root = tmp_path / "".join(names)
        for hparams_seed, (name, state) in enumerate(zip(names, states)):
            make_run(root / name, state, hparams_seed=hparams_seed, val_accs=(0.7, 0.7))
        runs = find_runs([str(root)])
        assert [r.args["hparams_seed"] for r in runs] == [0, 1, 2]
        result = soup(runs, "greedy", splits=["test_in"])
        results.append(([runs[0].args["hparams_seed"]] + [
            read_run(m).args["hparams_seed"] for m in result["candidates"]],
            result["accuracies"]["test_in"]))
    assert results[0] == results[1]
    assert results[0][0] == [0, 0, 1, 2]  # every tie: the hparams seeds' order


def test_dagger_averages_every_trial_and_scores_each_trial_split(tmp_path):
    states = [random_state(10 + s) for s in range(4)]
    for i, state in enumerate(states):
        make_run(tmp_path / f"r{i}", state, trial_seed=i % 2)
    runs = find_runs([str(tmp_path)], trial_seed=-1)
    result = soup(runs, "dagger", splits=["test_in"])
    assert len(result["members"]) == 4 and result["trial_seeds"] == [0, 1]
    model = manual_model(mean_state(states))
    per_trial = {t: manual_pooled(model, [manual_splits(t).eval_in[0]]) for t in (0, 1)}
    assert result["per_trial"]["test_in"] == pytest.approx({"0": per_trial[0],
                                                             "1": per_trial[1]})
    assert result["accuracies"]["test_in"] == pytest.approx((per_trial[0] + per_trial[1]) / 2)
    with pytest.raises(DomainBedError, match="trial seeds"):
        soup(runs, "uniform")


@pytest.mark.slow
def test_single_run_soup_reproduces_the_runs_own_test_accuracy(trained_sweep):
    evaluators = EvaluatorCache()
    for path in sorted(trained_sweep.iterdir()):
        run = read_run(str(path))
        result = soup([run], "uniform", evaluators, splits=["test_in", "id_val"])
        # the member is the run's best-ID-validation checkpoint: its record's test accuracy
        best = run.selected_record
        assert result["weights"] == "best-ID-validation checkpoint"
        assert result["accuracies"]["test_in"] == pytest.approx(best["env0_in_acc"], abs=1e-6)
        # Debug28 out splits have equal sizes: pooled equals the mean of the two
        assert result["accuracies"]["id_val"] == pytest.approx(run.id_val_acc, abs=1e-6)
        assert run.id_val_acc == max((r["env1_out_acc"] + r["env2_out_acc"]) / 2
                                     for r in run.records)
        # the final weights, asked for explicitly, reproduce the last record
        final = read_run(str(path), weights="final")
        result = soup([final], "uniform", evaluators, splits=["test_in"])
        assert result["accuracies"]["test_in"] == pytest.approx(
            final.final_record["env0_in_acc"], abs=1e-6)


@pytest.mark.slow
def test_inference_cli_writes_json(trained_sweep, tmp_path, capsys):
    output = tmp_path / "out.json"
    assert inference.main(["--dataset", "Debug28", "--test_env", "0", "--input_dir",
                           str(trained_sweep), "--weight_selection", "greedy", "--trial_seed",
                           "1", "--full_domain", "--no_progress", "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    assert result["rule"] == "greedy" and result["trial_seeds"] == [1]
    assert result["n_candidates"] == 2 and len(result["trace"]) == 2
    assert set(result["accuracies"]) == {"test_in", "id_val", "test_full"}
    assert "batch norm" in capsys.readouterr().out
    assert inference.main(["--dataset", "Debug28", "--test_env", "0", "--input_dir",
                           str(trained_sweep), "--weight_selection", "uniform", "--trial_seed",
                           "-1", "--no_progress", "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    assert result["rule"] == "dagger" and len(result["members"]) == 4


def _one_line_error(capsys, argv):
    assert inference.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("inference: error:") and "\n" not in err
    return err


def test_bad_input_gives_one_line_errors(tmp_path, capsys):
    make_run(tmp_path / "a", random_state(0))
    make_run(tmp_path / "b", random_state(1, num_classes=3), num_classes=3)
    base = ["--dataset", "Debug28", "--test_env", "0", "--input_dir", str(tmp_path),
            "--trial_seed", "0", "--no_progress", "--output", str(tmp_path / "o.json")]
    err = _one_line_error(capsys, base + ["--weight_selection", "uniform"])
    assert "classifier" in err and "predicts 3 classes" in err
    err = _one_line_error(capsys, base[:3] + ["2"] + base[4:] + ["--weight_selection",
                                                                  "uniform"])
    assert "no finished run" in err
    err = _one_line_error(capsys, base[:-4] + ["-1", "--no_progress", "--weight_selection",
                                               "greedy"])
    assert "uniform" in err and "greedy" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DomainBedError, match="zero runs"):
        soup([], "uniform")
    shutil.rmtree(tmp_path / "b")
    make_run(tmp_path / "c", {k: v for k, v in random_state(2).items()
                              if not k.startswith("classifier")}, num_classes=2)
    err = _one_line_error(capsys, base + ["--weight_selection", "uniform"])
    assert "keys" in err
