"""Sweep integration: flags, default algorithms, init files on jobs, init info in records.

The auxiliary test datasets (AuxDebugA / AuxDebugB) and the helpers come from
``tests.fixtures.aux_datasets``.
"""

import json
import os

import pytest
import torch

from domainbed.lib.weights import load_file, read_metadata
from domainbed.scripts.sweep_args import build_parser, jobs_from_args
from domainbed_aux import hooks as aux_hooks
from domainbed_aux.planning import planner_of
from tests.fixtures.aux_datasets import (HPARAMS, make_aux, make_phi_pt, run_job_in_process,
                                         sweep_args, train_aux_run)


pytestmark = pytest.mark.usefixtures("one_thread")


def recycling_args(tmp_path, aux, phi_pt, *flags):
    """The arguments of a sweep over the pool under ``aux``, probes under ``tmp_path/lp``."""
    return sweep_args(tmp_path, "--aux_dir", str(aux), "--output_dir_lp", str(tmp_path / "lp"),
                      "--pretrained_featurizer", phi_pt, *flags)


@pytest.mark.parametrize("flags,expected", [
    ([], None),
    (["--aux_dir", "AUX"], ["Ratatouille"]),
    (["--aux_dir", "none", "--output_dir_lp", "LP"], ["ERM"]),
    (["--aux_dir", "AUX", "--fusing_range", "4"], ["Fusing"]),
    (["--fusing_range", "0", "--aux_dir", "AUX"], ["Fusing"]),
    (["--algorithms", "InterTraining", "--aux_dir", "AUX"], ["InterTraining"]),
    (["--aux_dir", "AUX", "--algorithms", "ERM", "CORAL"], ["ERM", "CORAL"]),
])
def test_default_algorithm_follows_the_paper_flags(flags, expected):
    args = build_parser().parse_args(["status", "--output_dir", "OUT", *flags])
    assert args.algorithms == expected


def test_plain_sweep_is_untouched(tmp_path):
    args = sweep_args(tmp_path, "--algorithms", "ERM")
    jobs = jobs_from_args(args)
    assert all("init_from" not in j.train_args for j in jobs)


def test_ratatouille_jobs_start_from_pool_members(tmp_path):
    phi_pt = make_phi_pt(tmp_path / "phi_pt.safetensors")
    aux = make_aux(tmp_path, phi_pt)
    args = recycling_args(tmp_path, aux, phi_pt, "--hparams_space", "mild")
    jobs = jobs_from_args(args)
    assert [j.train_args["algorithm"] for j in jobs] == ["Ratatouille"] * 3
    assert all(j.train_args["hparams_space"] == "mild" for j in jobs)
    assert all(j.train_args["init_from"].startswith(str(tmp_path / "lp")) for j in jobs)
    pool = planner_of(args).pool("Debug28")
    assert pool.datasets == ["AuxDebugA", "AuxDebugB"]  # the Debug28 run is excluded

    written = aux_hooks.prepare_inits(jobs, args)
    assert sorted(set(written)) == sorted({j.train_args["init_from"] for j in jobs})
    inits = [read_metadata(j.train_args["init_from"])["init"] for j in jobs]
    # hparams_seed s -> slot s mod 3: pretrained, AuxDebugA, AuxDebugB
    assert [i["member"]["kind"] for i in inits] == ["pretrained", "aux", "aux"]
    assert [i["member"]["dataset"] for i in inits] == [None, "AuxDebugA", "AuxDebugB"]
    assert len({i["linear_probe"] for i in inits}) == 1 and inits[0]["robust"] is False

    # the composed file = pool member featurizer + linear probe classifier
    state, _ = load_file(jobs[1].train_args["init_from"])
    member, _ = load_file(pool.members[1].path)
    assert all(torch.equal(state["featurizer." + k], v) for k, v in member.items())
    probe = [f for f in os.listdir(tmp_path / "lp") if f.endswith(".safetensors")]
    assert len(probe) == 1
    lp_state, _ = load_file(str(tmp_path / "lp" / probe[0]))
    assert all(torch.equal(state[k], v) for k, v in lp_state.items()
               if k.startswith("classifier."))

    records = run_job_in_process(jobs[1])
    assert records and all(r["init"]["member"]["dataset"] == "AuxDebugA" for r in records)
    assert all(r["init"]["path"] == jobs[1].train_args["init_from"] for r in records)

    # a second listing gives the same files and does not train the probe again
    again = recycling_args(tmp_path, aux, phi_pt, "--hparams_space", "mild")
    jobs2 = jobs_from_args(again)
    assert [j.train_args["init_from"] for j in jobs2] == [j.train_args["init_from"] for j in jobs]
    assert [j.job_id for j in jobs2] == [j.job_id for j in jobs]
    aux_hooks.prepare_inits(jobs2, again)
    assert len(os.listdir(tmp_path / "lp" / "runs")) == 1


def test_fusing_records_lambdas(tmp_path):
    phi_pt = make_phi_pt(tmp_path / "phi_pt.safetensors")
    aux = make_aux(tmp_path, phi_pt)
    args = recycling_args(tmp_path, aux, phi_pt, "--fusing_range", "4")
    jobs = jobs_from_args(args)
    assert {j.train_args["algorithm"] for j in jobs} == {"Fusing"}
    aux_hooks.prepare_inits(jobs, args)
    init = read_metadata(jobs[0].train_args["init_from"])["init"]
    assert init["member"]["kind"] == "fused" and init["fusing_range"] == 4.0
    assert len(init["lambdas"]) == 3 and abs(sum(init["lambdas"]) - 1) < 1e-6
    assert [m["index"] for m in init["members"]] == [0, 1, 2]
    lambdas_of_seeds = {tuple(read_metadata(j.train_args["init_from"])["init"]["lambdas"])
                        for j in jobs}
    assert len(lambdas_of_seeds) == 3

    records = run_job_in_process(jobs[0])
    assert all(r["init"]["lambdas"] == init["lambdas"] for r in records)


def test_erm_with_lp_starts_from_member_zero(tmp_path):
    phi_pt = make_phi_pt(tmp_path / "phi_pt.safetensors")
    args = sweep_args(tmp_path, "--output_dir_lp", str(tmp_path / "lp"),
                      "--pretrained_featurizer", phi_pt)
    jobs = jobs_from_args(args)
    assert {j.train_args["algorithm"] for j in jobs} == {"ERM"}
    assert len({j.train_args["init_from"] for j in jobs}) == 1  # one trial: one init file
    aux_hooks.prepare_inits(jobs, args)
    init = read_metadata(jobs[0].train_args["init_from"])["init"]
    assert init["member"]["kind"] == "pretrained" and init["lambdas"] is None
    state, _ = load_file(jobs[0].train_args["init_from"])
    phi, _ = load_file(phi_pt)
    assert all(torch.equal(state["featurizer." + k], v) for k, v in phi.items())


def test_lpft_starts_from_the_linear_probe_without_any_recipe_flag(tmp_path):
    phi_pt = make_phi_pt(tmp_path / "phi_pt.safetensors")
    args = sweep_args(tmp_path, "--algorithms", "LPFT", "ERM", "--pretrained_featurizer",
                      phi_pt)
    jobs = jobs_from_args(args)
    lpft = [j for j in jobs if j.train_args["algorithm"] == "LPFT"]
    erm = [j for j in jobs if j.train_args["algorithm"] == "ERM"]
    assert len(lpft) == len(erm) == 3
    # ERM keeps the plain pretrained featurizer; LPFT gets (w_lp, phi_pt) from the probe
    # trained in <output_dir>/linear_probe
    assert all(j.train_args["init_part"] == "featurizer" for j in erm)
    lp_root = str(tmp_path / "sweep" / "linear_probe")
    assert all(j.train_args["init_from"].startswith(lp_root) for j in lpft)
    aux_hooks.prepare_inits(lpft, args)
    state, _ = load_file(lpft[0].train_args["init_from"])
    assert any(k.startswith("classifier.") for k in state)
    records = run_job_in_process(lpft[0])
    assert records[-1]["args"]["algorithm"] == "LPFT"
    assert records[-1]["init"]["member"]["kind"] == "pretrained"


def test_lpft_without_an_init_is_one_clear_error(tmp_path, capsys):
    from domainbed.scripts import train as train_script
    assert train_script.main(["--dataset", "Debug28", "--algorithm", "LPFT", "--steps", "1",
                              "--output_dir", str(tmp_path / "run"),
                              "--hparams", json.dumps(HPARAMS)]) == 2
    captured = capsys.readouterr()
    errors = [l for l in (captured.out + captured.err).splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "LPFT fine-tunes from a linear probe: give --init_from" \
        in errors[0]
    assert (tmp_path / "run" / "failed").exists() and not (tmp_path / "run" / "done").exists()


def test_aux_jobs_start_from_the_pretrained_featurizer(tmp_path):
    phi = make_phi_pt(tmp_path / "phi.safetensors")
    args = build_parser().parse_args([
        "launch", "--dataset", "AuxDebugA", "--test_env", "-1", "--output_dir",
        str(tmp_path / "aux"), "--n_hparams", "2", "--n_trials", "1", "--algorithms", "ERM",
        "--pretrained_featurizer", phi])
    jobs = jobs_from_args(args)
    assert len({j.train_args["init_from"] for j in jobs}) == 1
    assert all(j.train_args["init_part"] == "featurizer" for j in jobs)
    assert not os.path.exists(jobs[0].train_args["init_from"])  # listing writes nothing
    assert aux_hooks.prepare_inits(jobs, args) == [jobs[0].train_args["init_from"]]
    stored, _ = load_file(jobs[0].train_args["init_from"])
    original, _ = load_file(phi)
    assert set(stored) == {"featurizer." + k for k in original}
    assert all(torch.equal(stored["featurizer." + k], v) for k, v in original.items())


def test_robust_pool_uses_moving_average_runs(tmp_path):
    phi_pt = make_phi_pt(tmp_path / "phi_pt.safetensors")
    aux = make_aux(tmp_path, phi_pt)
    train_aux_run(aux / "AuxDebugB_notest" / "ma", "AuxDebugB", phi_pt, 0, algorithm="MA",
                  steps=3)
    args = recycling_args(tmp_path, aux, phi_pt, "--aux_pool_kind", "robust",
                          "--algorithms", "InterTraining")
    jobs = jobs_from_args(args)
    pool = planner_of(args).pool("Debug28")
    assert pool.datasets == ["AuxDebugB"] and len(pool.aux_members) == 1
    assert pool.aux_members[0].run_dir.endswith("ma")
    aux_hooks.prepare_inits(jobs, args)
    assert all(read_metadata(j.train_args["init_from"])["init"]["robust"] for j in jobs)


def test_missing_aux_runs_fail_with_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    args = sweep_args(tmp_path, "--aux_dir", str(tmp_path / "empty"))
    with pytest.raises(Exception, match="auxiliary run"):
        jobs_from_args(args)
