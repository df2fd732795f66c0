"""Which weights of a run are used downstream: its best-ID-validation checkpoint.

``model_best.safetensors`` holds the weights at the evaluation with the highest mean
``env{j}_out_acc`` over training envs (replaced only when strictly better), survives resume,
and is what soups, ensembles, WiSE-FT and the shared linear probe use (paper appendix F.1).
"""

import json
import os

import pytest
import torch

from domainbed.lib import run_dir as rd
from domainbed.lib.weights import load_file, read_metadata
from domainbed.scripts import train as train_script
from domainbed_aux.scoring.evaluation import EvaluatorCache, RunEvaluator
from domainbed_aux.scoring.runs import read_run
from domainbed_aux.scoring.soups import soup
from tests.fixtures.recipe_runs import read_records, run_dirs

FAST = json.dumps({"batch_size": 8, "backbone": "tiny_cnn"})
TRAIN_ENVS = (1, 2)


def _id_val(record):
    return sum(record[f"env{j}_out_acc"] for j in TRAIN_ENVS) / len(TRAIN_ENVS)


def _train(out, *extra):
    return train_script.main(["--dataset", "Debug28", "--steps", "25", "--checkpoint_freq",
                              "3", "--test_envs", "0", "--seed", "1", "--output_dir", str(out),
                              "--hparams", FAST, *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("best") / "run"
    assert _train(out) == 0
    return out


def _first_argmax(records):
    best = None
    for record in records:
        if best is None or _id_val(record) > _id_val(best):
            best = record
    return best


def test_best_checkpoint_is_the_first_evaluation_with_the_highest_id_val(trained):
    records = read_records(str(trained))
    assert len(records) == 9  # steps 0, 3, ..., 24
    meta = read_metadata(str(trained / rd.MODEL_BEST))["best_checkpoint"]
    want = _first_argmax(records)
    assert meta["step"] == want["step"]
    assert meta["id_val_acc"] == pytest.approx(_id_val(want), abs=0)
    # ties keep the earlier checkpoint: no later record has a strictly higher ID val
    assert all(_id_val(r) <= meta["id_val_acc"] for r in records)
    assert read_run(str(trained)).selected_record["step"] == want["step"]


def test_best_checkpoint_re_evaluates_to_its_recorded_accuracies(trained):
    run = read_run(str(trained))
    record = run.selected_record
    evaluator = RunEvaluator(run)
    state, _ = load_file(run.model_path)
    assert run.model_path.endswith(rd.MODEL_BEST)
    # what selection reads was scored at that evaluation: ID validation and the test split
    assert all(record[k] is not None for k in ("env0_in_acc", "env1_out_acc", "env2_out_acc"))
    for env in (0, 1, 2):
        for part, sets in (("in", evaluator.splits.eval_in), ("out", evaluator.splits.eval_out)):
            if record[f"env{env}_{part}_acc"] is None:  # not scored at this evaluation
                continue
            got = evaluator_accuracy(evaluator, state, sets[env])
            assert got == record[f"env{env}_{part}_acc"], (env, part)


def evaluator_accuracy(evaluator, state, dataset):
    from domainbed.lib import misc
    from domainbed.lib.fast_data_loader import eval_loader
    model = evaluator.model(state)
    with torch.no_grad():
        return misc.accuracy(model, eval_loader(dataset, 64, 0), None, evaluator.device)


def test_a_soup_of_one_run_equals_its_best_record(trained):
    run = read_run(str(trained))
    result = soup([run], "uniform", EvaluatorCache(), splits=["test_in"])
    assert result["accuracies"]["test_in"] == run.selected_record["env0_in_acc"]
    assert result["members"] == [str(trained)]
    assert result["weights"] == "best-ID-validation checkpoint"


def test_resume_keeps_the_best_checkpoint(tmp_path, trained, monkeypatch):
    """A run that fails after its best checkpoint and is resumed ends with the same
    model_best (weights and metadata) as the uninterrupted run."""
    from domainbed.algorithms.erm import ERM
    calls = {"n": 0}
    original = ERM.update

    def failing_update(self, minibatches, unlabeled=None):
        calls["n"] += 1
        if calls["n"] == 20:  # after the checkpoint of step 18
            raise RuntimeError("simulated preemption")
        return original(self, minibatches, unlabeled)

    out = tmp_path / "resumed"
    monkeypatch.setattr(ERM, "update", failing_update)
    assert _train(out) != 0
    assert not (out / rd.DONE).exists() and (out / rd.MODEL_BEST).exists()
    monkeypatch.setattr(ERM, "update", original)
    assert _train(out) == 0
    assert "resuming from step 19" in (out / "out.txt").read_text()
    got, got_meta = load_file(str(out / rd.MODEL_BEST))
    want, want_meta = load_file(str(trained / rd.MODEL_BEST))
    assert got_meta["best_checkpoint"] == want_meta["best_checkpoint"]
    assert got.keys() == want.keys()
    assert all(torch.allclose(got[k], want[k], atol=1e-6) for k in want)


def test_trajectory_averages_keep_their_final_model(tmp_path):
    out = tmp_path / "ma"
    assert train_script.main(["--dataset", "Debug28", "--steps", "7", "--checkpoint_freq",
                              "3", "--algorithm", "MA", "--output_dir", str(out),
                              "--hparams", json.dumps({"batch_size": 8, "backbone": "tiny_cnn",
                                                       "ma_start_iter": 2})]) == 0
    assert not (out / rd.MODEL_BEST).exists()
    run = read_run(str(out))
    assert run.model_path.endswith(rd.MODEL) and run.selected_record == run.final_record


def test_runs_without_a_best_checkpoint_need_the_explicit_final_option(tmp_path, trained):
    import shutil
    from domainbed.errors import DomainBedError
    old = tmp_path / "old_run"
    shutil.copytree(trained, old)
    (old / rd.MODEL_BEST).unlink()
    with pytest.raises(DomainBedError, match="--weights final"):
        read_run(str(old)).model_path
    assert read_run(str(old), weights="final").model_path.endswith(rd.MODEL)


@pytest.mark.slow
def test_recipe_soups_average_best_checkpoints_and_the_probe_is_one(recipe_run):
    from domainbed_aux.init.probe import read_linear_probe
    from domainbed_aux.report import build_table1
    target = str(recipe_run / "target" / "Debug28" / "test0")
    report, provider = build_table1([target], cache_dir=None)
    soups = {k: v for k, v in provider.details.items() if "soups uniform" in k
             or "Ratatouille uniform" in k}
    assert soups
    for result in soups.values():
        assert result["weights"] == "best-ID-validation checkpoint"
    assert any("best-ID-validation checkpoint" in n for n in report.notes)

    # the shared probe's head is the head of its fit's best ID-validation evaluation
    lp = recipe_run / "lp"
    probes = sorted(p for p in os.listdir(lp) if p.startswith("lp_Debug28_test0"))
    (probe,) = [p for p in probes if p.endswith(".safetensors")]
    _, classifier, meta = read_linear_probe(str(lp / probe))
    records = read_records(str(lp / "runs" / probe[:-len(".safetensors")]))
    best = _first_argmax(records)
    assert meta["linear_probe"]["best_checkpoint"]["step"] == best["step"]
    assert meta["linear_probe"]["best_checkpoint"]["id_val_acc"] == pytest.approx(
        sum(best[f"env{j}_out_acc"] for j in (1, 2)) / 2)
    assert set(classifier) == {"weight", "bias"}
    # every run of the sweep left its best checkpoint
    assert all(os.path.exists(os.path.join(p, rd.MODEL_BEST)) or
               read_records(p)[-1]["args"]["algorithm"] in ("MA", "SWAD")
               for p in run_dirs(target))
