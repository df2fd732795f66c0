"""SWAD as published: the threshold is the mean validation loss of the converged window
times (1 + tolerance_ratio); 0.2 on VLCS, 0.3 elsewhere; training stops once the valley is
over, and the record says so."""

import json

import pytest

from domainbed import hparams_registry
from domainbed.algorithms.swad import SWAD
from domainbed.algorithms.swad_valley import LossValley
from domainbed.scripts import train as train_script
from tests.fixtures.recipe_runs import read_records


def test_threshold_on_a_scripted_curve():
    valley = LossValley(n_converge=3, n_tolerance=2, tolerance_ratio=0.3)
    losses = [2.0, 1.0, 1.3, 1.4, 1.45, 1.8, 1.9]
    stopped_at = None
    for i, loss in enumerate(losses):
        if valley.observe(i, loss, i).stopped:
            stopped_at = i
    # converged at index 3 (queue 1.0, 1.3, 1.4: the oldest is the minimum)
    assert valley.threshold == pytest.approx((1.0 + 1.3 + 1.4) / 3 * 1.3)  # 1.6033
    # 1.45 is within the mean-based threshold (the oldest-loss rule, 1.3, would drop it);
    # 1.8 and 1.9 are the two evaluations above it: the valley is over at index 6
    assert valley.segments() == [1, 2, 3, 4] and stopped_at == 6


@pytest.mark.parametrize("dataset,ratio", [("VLCS", 0.2), ("PACS", 0.3),
                                           ("TerraIncognita", 0.3), ("DomainNet", 0.3)])
def test_tolerance_ratio_per_dataset(dataset, ratio):
    for hp in (hparams_registry.default_hparams("SWAD", dataset),
               hparams_registry.random_hparams("SWAD", dataset, 5),
               hparams_registry.default_hparams("SWAD", dataset, "mild")):
        assert hp["swad_tolerance_ratio"] == ratio


def test_swad_stops_training_once_the_valley_is_over(tmp_path, monkeypatch):
    losses = iter([1.0, 0.8, 0.9, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0])
    monkeypatch.setattr(SWAD, "validation_loss", lambda self, loaders: next(losses))
    out = tmp_path / "swad"
    hparams = {"batch_size": 8, "backbone": "tiny_cnn", "swad_n_converge": 2,
               "swad_n_tolerance": 2, "swad_tolerance_ratio": 0.3}
    assert train_script.main(["--dataset", "Debug28", "--algorithm", "SWAD", "--steps", "40",
                              "--checkpoint_freq", "3", "--output_dir", str(out),
                              "--hparams", json.dumps(hparams)]) == 0
    records = read_records(str(out))
    live = [r for r in records if not r.get("final_average")]
    # losses at steps 0, 3, 6, 9, 12: converged at step 3 (0.8, 0.9), threshold 0.85 * 1.3
    # = 1.105; 1.5 and 1.6 (steps 9, 12) are above it: the valley is over at step 12
    assert [r["step"] for r in live] == [0, 3, 6, 9, 12]
    assert live[-1]["swad_stopped"] is True
    (final,) = [r for r in records if r.get("final_average")]
    assert final["step"] == 12 and final["stopped_early"] is True
    assert (final["swad_window_start"], final["swad_window_end"]) == (1, 6)
    assert (out / "done").exists()
