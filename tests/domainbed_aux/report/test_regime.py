"""The report's regime section: convergence criteria checked from the records."""

import json
import logging
import os

import pytest

from domainbed_aux.report import regime as rg
from domainbed_aux.scoring.runs import read_run

N_STEPS = 100


def _write_run(path, losses, id_vals, algorithm="ERM", test_envs=(0,), hparams_seed=0,
               trial_seed=0, dataset="EmbeddedShapes", n_envs=4):
    """A finished run directory whose records have these losses and ID-val accuracies (one
    record every 10 steps, the last at step N_STEPS - 1)."""
    os.makedirs(path, exist_ok=True)
    steps = [min(10 * i, N_STEPS - 1) for i in range(len(losses))]
    args = {"algorithm": algorithm, "dataset": dataset, "test_envs": list(test_envs),
            "hparams_seed": hparams_seed, "trial_seed": trial_seed, "seed": 0,
            "steps": N_STEPS, "hparams": None}
    with open(os.path.join(path, "results.jsonl"), "w") as f:
        for step, loss, acc in zip(steps, losses, id_vals):
            record = {"step": step, "loss": loss, "args": args, "hparams": {}}
            for j in range(n_envs):
                test = j in test_envs
                record[f"env{j}_out_acc"] = None if test else acc
                record[f"env{j}_in_acc"] = 0.5 if test else None
            f.write(json.dumps(record) + "\n")
    for name in ("done", "model.safetensors"):
        open(os.path.join(path, name), "w").close()
    return path


FLAT_LOSS = [0.9, 0.3, 0.1, 0.06, 0.05, 0.05, 0.045, 0.045, 0.044, 0.044, 0.043]
FALLING_LOSS = [2.0, 1.8, 1.6, 1.4, 1.2, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5]
PLATEAU_ACC = [0.5, 0.8, 0.9, 0.92, 0.93, 0.935, 0.94, 0.935, 0.94, 0.935, 0.935]
RISING_ACC = [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8]


def _recipe(tmp_path, converged: bool):
    """Runs of every stage of a recipe, near convergence or stopped far from it."""
    loss = FLAT_LOSS if converged else FALLING_LOSS
    acc = PLATEAU_ACC if converged else RISING_ACC
    pre = _write_run(str(tmp_path / "pretrain" / "p"), loss, acc, test_envs=(-1,),
                     dataset="EmbeddedPretrain", n_envs=2)
    probe = _write_run(str(tmp_path / "lp" / "runs" / "lp0"), loss, acc, "LinearProbe")
    aux = _write_run(str(tmp_path / "aux" / "EmbeddedGlyphs_notest" / "a"), loss, acc,
                     test_envs=(-1,), dataset="EmbeddedGlyphs")
    targets = []
    for seed in range(3):
        # unconverged: the members travelled different distances (20 points apart)
        offset = 0.0 if converged else 0.1 * seed
        targets.append(_write_run(str(tmp_path / "target" / f"t{seed}"), loss,
                                  [max(0.0, a - offset) for a in acc], hparams_seed=seed))
    curves = [rg.read_curves([os.path.dirname(p)]) for p in (pre, probe, aux)]
    return [read_run(t) for t in targets], curves


def test_converged_runs_meet_every_criterion_quietly(tmp_path, caplog):
    runs, (foundation, probes, aux) = _recipe(tmp_path, converged=True)
    regime = rg.check_regime(runs, foundation, probes, aux, with_stages=True)
    assert regime.ok and [c.ok for c in regime.criteria] == [True] * 5
    assert regime.counts == {"foundation": 1, "probes": 1, "aux": 1, "target": 3}
    with caplog.at_level(logging.WARNING):
        rg.warn_regime(regime)
    assert not caplog.records
    text = rg.render_regime(regime)
    assert "FAILED" not in text and "WARNING" not in text and text.count("[ok]") == 5


def test_runs_far_from_convergence_are_named_with_the_criterion(tmp_path, caplog):
    runs, (foundation, probes, aux) = _recipe(tmp_path, converged=False)
    regime = rg.check_regime(runs, foundation, probes, aux, with_stages=True)
    failed = {c.key: c for c in regime.failed()}
    assert set(failed) == {"foundation", "probes", "loss", "best_not_last", "spread"}
    assert any("EmbeddedPretrain" in o for o in failed["foundation"].offenders)
    assert any("LinearProbe" in o for o in failed["probes"].offenders)
    # every aux and target run fell 0.3 nats over its last quarter
    assert len(failed["loss"].offenders) == 4
    assert "spread 20.0 points" in failed["spread"].offenders[0]
    with caplog.at_level(logging.WARNING):
        rg.warn_regime(regime)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 5 and all("FAILED" in m for m in messages)
    assert any("t1 (ERM EmbeddedShapes" in m for m in messages)
    assert "WARNING" in rg.render_regime(regime)


def test_measures_of_one_run():
    curve = rg.RunCurve("r", steps=[0, 20, 40, 60, 70, 80, 90, 99],
                        id_val=[10.0, 50.0, 60.0, 61.0, 62.0, 65.0, 60.0, 61.0],
                        loss=[2.0, 1.0, 0.5, 0.4, 0.4, 0.3, 0.2, 0.3], n_steps=100)
    # quarter means: (50, 75] holds steps 60, 70; (75, 100] steps 80, 90, 99
    assert rg.acc_gain(curve) == pytest.approx(62.0 - 61.5)
    assert rg.loss_drop(curve) == pytest.approx(0.4 - 0.8 / 3)
    assert rg.best_is_last(curve) is False
    curve.id_val[-1] = 65.0  # a tie with an earlier record: the earlier one is the best
    assert rg.best_is_last(curve) is False
    curve.id_val[-1] = 70.0
    assert rg.best_is_last(curve) is True


def test_stages_without_runs_are_not_measured_rather_than_passed(tmp_path):
    runs, _ = _recipe(tmp_path, converged=True)
    regime = rg.check_regime(runs, [], [], [], with_stages=True)
    by_key = {c.key: c.ok for c in regime.criteria}
    assert by_key["foundation"] is None and by_key["probes"] is None
    assert "[not measured]" in rg.render_regime(regime)
    assert rg.regime_to_dict(regime)["criteria"][0]["ok"] is None
