"""Where every run starts (SPEC section 7), read from the records of a real recipe sweep.

Non-recycling algorithms start from (w_lp, phi_pt) whatever the sweep passes; only
InterTraining / Ratatouille / Fusing draw from the auxiliary pool; auxiliary runs start
from a linear probe of phi_pt on their own dataset.
"""

import os
from types import SimpleNamespace

import pytest

from domainbed_aux import recipe as recipe_lib
from domainbed_aux import planning
from domainbed_aux.init.probe import probe_path
from domainbed_aux.pool.members import AuxPool, PoolMember
from tests.fixtures.paths import SWEEPS
from tests.fixtures.recipe_runs import read_records, run_dirs

NON_RECYCLING = ("ERM", "LPFT", "CORAL", "MA", "SWAD")
PAPER = os.path.join(SWEEPS, "ratatouille_paper.json")

pytestmark = pytest.mark.slow


def _target_runs(root):
    runs = {}
    for path in run_dirs(os.path.join(root, "target")):
        records = read_records(path)
        runs.setdefault(records[-1]["args"]["algorithm"], []).append(records)
    return runs


def test_non_recycling_runs_start_from_the_pretrained_member(recipe_run):
    runs = _target_runs(recipe_run)
    for algorithm in NON_RECYCLING:
        assert len(runs[algorithm]) == 5, algorithm
        for records in runs[algorithm]:
            kinds = {r["init"]["member"]["kind"] for r in records}
            assert kinds == {"pretrained"}, (algorithm, records[-1]["args"]["hparams_seed"])
            # (w_lp, phi_pt) is the target's linear probe itself
            assert all(r["init"]["linear_probe_key"].startswith("lp_Debug28_test0_trial0_")
                       for r in records)


def test_recycling_runs_follow_the_papers_mapping(recipe_run):
    runs = _target_runs(recipe_run)
    for algorithm in ("InterTraining", "Ratatouille"):
        by_seed = {rs[-1]["args"]["hparams_seed"]: rs[-1]["init"]["member"]
                   for rs in runs[algorithm]}
        # 2 aux datasets: slot = hparams_seed mod 3; aux run = hparams_seed mod 2
        slots = {s: (m["kind"], m["dataset"], m["hparams_seed"]) for s, m in by_seed.items()}
        assert slots == {0: ("pretrained", None, None), 1: ("aux", "AuxDebugA", 1),
                         2: ("aux", "AuxDebugB", 0), 3: ("pretrained", None, None),
                         4: ("aux", "AuxDebugA", 0)}, algorithm
    for records in runs["Fusing"]:
        init = records[-1]["init"]
        assert init["member"]["kind"] == "fused"
        assert [m["kind"] for m in init["members"]] == ["pretrained", "aux", "aux"]
        assert abs(sum(init["lambdas"]) - 1) < 1e-6


def test_aux_runs_start_from_a_probe_on_their_own_dataset(recipe_run):
    aux_runs = run_dirs(os.path.join(recipe_run, "aux"))
    assert len(aux_runs) == 4
    for path in aux_runs:
        records = read_records(path)
        dataset = records[-1]["args"]["dataset"]
        for record in records:
            assert record["init"]["member"]["kind"] == "pretrained"
            # every domain trains: the probe of the auxiliary dataset with no test env
            assert record["init"]["linear_probe_key"].startswith(f"lp_{dataset}_test-1_")
        assert records[-1]["args"]["init_part"] in ("all", None)  # head and featurizer


def _fake_pool():
    """A pool of 4 auxiliary datasets x 4 runs, as the paper's (no file is read)."""
    members = [PoolMember(kind="pretrained", name="phi_pt")]
    for dataset in ("AuxA", "AuxB", "AuxC", "AuxD"):
        for run in range(4):
            members.append(PoolMember(kind="aux", dataset=dataset, run_dir=f"{dataset}/{run}",
                                      sha256=f"{dataset}{run}", hparams_seed=run,
                                      trial_seed=0, name=f"{dataset}_{run}"))
    return AuxPool(root="POOL", members=members)


def test_paper_recipe_listing_gives_no_erm_job_an_auxiliary_init(monkeypatch):
    """Every target job of the paper recipe, listed as the dummy launcher lists them, with a
    pool present: ERM starts from the probe, never from a pool member."""
    from domainbed.sweep.options import list_jobs
    monkeypatch.setattr(planning.InitPlanner, "pool", lambda self, dataset, verify=False,
                        build=False: _fake_pool())
    recipe = recipe_lib.load_recipe(PAPER, output_root="OUT")
    kinds = {}
    for spec in recipe_lib.target_sweeps(recipe)[:2]:  # VLCS test envs 0 and 1
        args = spec.replace(mode="list")  # as the dummy launcher lists them
        jobs = list_jobs(args)
        assert len(jobs) == 180
        requests = planning.planner_of(args).requests
        for job in jobs:
            spec, request, _ = requests[job.train_args["init_from"]]
            member = "probe" if request is None else request.member["kind"]
            kinds.setdefault(job.train_args["algorithm"], set()).add(member)
            if job.train_args["algorithm"] == "ERM":
                assert job.train_args["init_from"] == probe_path(
                    spec, planning.lp_root(planning.planner_of(args).options))
    assert kinds == {"ERM": {"probe"}, "Ratatouille": {"pretrained", "aux"},
                     "Fusing": {"fused"}}


@pytest.mark.parametrize("algorithm", NON_RECYCLING + ("IRM", "Mixup"))
@pytest.mark.parametrize("flags", [["--aux_dir", "AUX"], ["--output_dir_lp", "LP"],
                                   ["--aux_dir", "AUX", "--output_dir_lp", "LP",
                                    "--fusing_range", "4"]])
def test_init_kind_of_non_recycling_algorithms_ignores_the_flags(algorithm, flags):
    args = SimpleNamespace(aux_dir=None, output_dir_lp=None, fusing_range=-1.0)
    for name, value in zip(flags[::2], flags[1::2]):
        setattr(args, name[2:], float(value) if name == "--fusing_range" else value)
    train_args = {"algorithm": algorithm, "test_envs": [0], "hparams_seed": 1}
    options = planning.InitOptions.of(args)
    assert planning.init_kind(train_args, options) == "probe"
    assert planning.init_kind(dict(train_args, algorithm="Ratatouille"), options) == "pool"
