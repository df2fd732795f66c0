"""benchmarks/embedded_properties.py: the summaries' arithmetic, the aux choice, and a tiny
end-to-end run that produces the three figures (no assertion on which method wins)."""

import json
import math

import pytest

from benchmarks import embedded_properties as ep
from domainbed.datasets.embedded import EMBEDDED_TARGET_FAMILY


def _row(dataset, t, ft_test, ft_id, sc_test, sc_id):
    return {"dataset": dataset, "test_env": t, "test_domain": f"d{t}", "steps": 10,
            "finetune": {"test": ft_test, "id_val": ft_id},
            "scratch": {"test": sc_test, "id_val": sc_id}}


ROWS = [_row("A", 0, 0.60, 0.90, 0.40, 0.80), _row("A", 1, 0.70, 0.90, 0.50, 0.70),
        _row("B", 2, 0.50, 0.55, 0.20, 0.50)]


def test_shift_is_id_val_minus_test_in_points_averaged_per_dataset_then_over_datasets():
    shift = ep.summarise_shift(ROWS)
    ft = shift["finetune"]
    assert [r["gap"] for r in ft["per_run"]] == pytest.approx([30.0, 20.0, 5.0])
    assert ft["per_dataset"]["A"] == pytest.approx({"id_val": 90.0, "test": 65.0, "gap": 25.0})
    assert ft["per_dataset"]["B"]["gap"] == pytest.approx(5.0)
    # datasets weigh equally, whatever their number of test envs
    assert ft["average"]["gap"] == pytest.approx(15.0)
    assert shift["scratch"]["per_dataset"]["A"]["gap"] == pytest.approx(30.0)
    assert shift["scratch"]["average"]["gap"] == pytest.approx((30.0 + 30.0) / 2)


def test_transfer_is_finetune_minus_scratch_on_test_and_id_val():
    transfer = ep.summarise_transfer(ROWS)
    a = transfer["per_dataset"]["A"]
    assert a["test"] == pytest.approx({"finetune": 65.0, "scratch": 45.0, "gain": 20.0})
    assert a["id_val"] == pytest.approx({"finetune": 90.0, "scratch": 75.0, "gain": 15.0})
    assert transfer["per_dataset"]["B"]["test"]["gain"] == pytest.approx(30.0)
    assert transfer["average"]["test"]["gain"] == pytest.approx(25.0)
    assert transfer["average"]["id_val"]["gain"] == pytest.approx((15.0 + 5.0) / 2)


def test_aux_datasets_are_other_selected_datasets_then_the_rest_of_the_family():
    family = list(EMBEDDED_TARGET_FAMILY)
    selected = family[:3]
    assert ep.aux_datasets_for(selected[0], selected) == [selected[1], selected[2]]
    assert ep.aux_datasets_for(selected[2], selected) == [selected[0], selected[1]]
    alone = ep.aux_datasets_for(family[3], [family[3]])
    assert family[3] not in alone and len(alone) == 2 and set(alone) <= set(family)
    for target in family:
        assert target not in ep.aux_datasets_for(target, family)
    # a connectivity target outside --datasets takes the selected datasets first
    assert ep.aux_datasets_for(family[4], family[:2]) == family[:2]


def test_run_names_change_with_the_settings_that_change_results(tmp_path):
    base = ep.Settings(work_dir=str(tmp_path), datasets=["EmbeddedShapes"])
    assert base.tag(301) == "steps301_seed0"
    assert base.tag(301) != base.tag(5)
    assert base.tag(301, {"lp_steps": 3}) != base.tag(301)
    other = ep.Settings(work_dir=str(tmp_path), datasets=["EmbeddedShapes"], seed=1,
                        hparams={"batch_size": 4})
    assert other.tag(301) not in (base.tag(301),) and other.tag(301).startswith("steps301_seed1")


def test_bad_test_env_names_the_valid_range(tmp_path):
    from domainbed.errors import DomainBedError
    settings = ep.Settings(work_dir=str(tmp_path), datasets=["EmbeddedShapes"], test_envs=[7])
    with pytest.raises(DomainBedError, match="0..3"):
        ep.test_envs_of(settings, "EmbeddedShapes")


@pytest.mark.slow
def test_tiny_end_to_end_gives_the_three_figures_and_reuses_runs(tmp_path, capsys):
    target = EMBEDDED_TARGET_FAMILY[0]
    settings = ep.Settings(work_dir=str(tmp_path / "work"), datasets=[target], test_envs=[1],
                           steps=3, pretrain_steps=3, hparams={"batch_size": 4})
    result = ep.measure_properties(settings)

    (row,) = result["runs"]
    assert (row["dataset"], row["test_env"], row["steps"]) == (target, 1, 3)
    for init in ("finetune", "scratch"):
        gap = result["domain_shift"][init]["per_dataset"][target]["gap"]
        assert gap == pytest.approx(100 * (row[init]["id_val"] - row[init]["test"]))
        assert 0.0 <= row[init]["test"] <= 1.0 and 0.0 <= row[init]["id_val"] <= 1.0
    assert set(result["transfer"]["average"]) == {"test", "id_val"}

    conn = result["connectivity"]["per_target"][target]
    assert conn["test_env"] == 1 and len(conn["aux_datasets"]) == 2
    assert target not in conn["aux_datasets"]
    for split in ("test_in", "id_val"):
        s = conn[split]
        assert all(0.0 <= s[k] <= 100.0 for k in ("endpoint_a", "endpoint_b", "midpoint"))
        assert s["endpoints_mean"] == pytest.approx((s["endpoint_a"] + s["endpoint_b"]) / 2)
        assert s["difference"] == pytest.approx(s["midpoint"] - s["endpoints_mean"])

    # the endpoints re-scored on the rebuilt splits are the runs' own recorded accuracies
    from domainbed_aux.scoring.runs import read_run
    lmc_runs = sorted((tmp_path / "work" / "lmc").glob(f"{target}_test1_from_*"))
    lmc_runs = [p for p in lmc_runs if p.is_dir()]
    assert len(lmc_runs) == 2
    recorded = {}
    for path in lmc_runs:
        run = read_run(str(path))
        assert run.algorithm == "Ratatouille"
        assert run.init["member"]["kind"] == "aux"  # starts from an auxiliary featurizer
        # two different draws of the paper's mild space; the paper's share of lp_steps
        assert run.args["hparams_space"] == "mild"
        assert run.hparams["lp_steps"] == round(200 / 5001 * 3)
        # the endpoints are the runs' best checkpoints: what a soup averages
        recorded[run.init["member"]["dataset"]] = 100 * run.selected_record["env1_in_acc"]
    assert sorted(read_run(str(p)).args["hparams_seed"] for p in lmc_runs) == [1, 2]
    aux_inits = [read_run(str(p)).init for p in (tmp_path / "work" / "aux").iterdir()
                 if p.is_dir()]
    assert len(aux_inits) == 2 and all(
        i["member"]["kind"] == "pretrained" and "_test-1_" in i["linear_probe_key"]
        for i in aux_inits)  # auxiliary runs start from a probe on their own dataset
    aux_a, aux_b = conn["aux_datasets"]
    assert conn["test_in"]["endpoint_a"] == pytest.approx(recorded[aux_a])
    assert conn["test_in"]["endpoint_b"] == pytest.approx(recorded[aux_b])

    # the CLI on the same work dir reuses every run (training would fail: we forbid it)
    import domainbed.training.run as core_run

    def no_training(args):
        raise AssertionError(f"{args.output_dir} was trained again instead of reused")

    import logging
    levels = {name: logging.getLogger(name).level for name in ("domainbed", "domainbed_aux")}
    original = core_run.train
    core_run.train = no_training
    try:
        output = tmp_path / "figures.json"
        code = ep.main(["--datasets", target, "--test_envs", "1", "--steps", "3",
                        "--pretrain_steps", "3", "--hparams", '{"batch_size": 4}',
                        "--work_dir", str(tmp_path / "work"), "--output", str(output)])
    finally:
        core_run.train = original
        for name, level in levels.items():  # main() quiets the training loop's log
            logging.getLogger(name).setLevel(level)
    assert code == 0
    printed = capsys.readouterr().out
    for heading in ("(i) domain shift", "(ii) transfer", "(iii) linear mode connectivity"):
        assert heading in printed
    saved = json.loads(output.read_text())
    assert saved["connectivity"]["per_target"][target]["test_in"]["midpoint"] == \
        pytest.approx(conn["test_in"]["midpoint"])
    assert not math.isnan(saved["domain_shift"]["finetune"]["average"]["gap"])

    # (iii) alone, from the same runs
    core_run.train = no_training
    try:
        code = ep.main(["--datasets", target, "--test_envs", "1", "--steps", "3",
                        "--pretrain_steps", "3", "--hparams", '{"batch_size": 4}',
                        "--work_dir", str(tmp_path / "work"), "--no_shift"])
    finally:
        core_run.train = original
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    printed = capsys.readouterr().out
    assert code == 0 and "(i) domain shift" not in printed
    assert "(iii) linear mode connectivity" in printed
