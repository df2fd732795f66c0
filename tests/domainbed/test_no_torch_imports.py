"""collect_results, list_top_hparams and sweep status run without importing torch.

Each command runs in a fresh interpreter through a ``-c`` wrapper that prints, after the
command, whether ``torch`` / ``torchvision`` or a module that defines an algorithm or a
dataset are in ``sys.modules``. The torch-free names come from the registries' indexes, read
from source; checked here against what the registrations register once imported.
"""

import json
import os
import subprocess
import sys

import pytest

from domainbed.reports.synthetic import make_record, write_run

from tests.fixtures.commands import run_command
from tests.fixtures.model_runs import folder_files as _tree  # what a listing must not change
from tests.fixtures.paths import REPO


def write_small_sweep(root, algorithms=("ERM", "CORAL"), dataset="PACS", n_envs=4):
    i = 0
    for trial in (0, 1):
        for algorithm in algorithms:
            for test_envs in ([0], [1], [0, 1]):
                records = [make_record(dataset=dataset, algorithm=algorithm,
                                       test_envs=test_envs, trial_seed=trial, seed=i,
                                       step=step, n_envs=n_envs,
                                       accs={e: (0.1 * e + 0.01 * step / 100 + 0.05 * trial,
                                                 0.2 + 0.01 * e) for e in range(n_envs)})
                           for step in (0, 100)]
                write_run(os.path.join(root, f"run{i:03d}"), records)
                i += 1
    write_run(os.path.join(root, "unfinished"), [make_record(dataset=dataset)], done=False)


def test_collect_results_imports_no_torch_and_writes_its_file(tmp_path):
    write_small_sweep(str(tmp_path))
    code, out, heavy = run_command("domainbed.scripts.collect_results",
                                   ["--input_dir", str(tmp_path)])
    assert code == 0 and heavy == []
    assert "Dataset: PACS, model selection method: training-domain validation set" in out
    assert out.splitlines()[0] == "Total records: 24"
    # the torch-free atomic write left the file next to the sweep
    assert (tmp_path / "results.txt").read_text() == out
    for fmt in ("--latex", "--markdown", "--json"):
        code, _, heavy = run_command("domainbed.scripts.collect_results",
                                     ["--input_dir", str(tmp_path), "--no_save", fmt])
        assert code == 0 and heavy == [], fmt


def test_collect_results_output_is_the_same_with_the_registries_imported(tmp_path):
    """The index's names give the bytes the loaded registries give."""
    write_small_sweep(str(tmp_path), algorithms=("SWAD", "CORAL", "ERM", "MA"),
                      dataset="VLCS")
    _, torch_free, heavy = run_command("domainbed.scripts.collect_results",
                                       ["--input_dir", str(tmp_path), "--no_save"])
    assert heavy == []
    from domainbed.algorithms.registry import ALGORITHM_REGISTRY
    from domainbed.datasets.registry import DATASET_REGISTRY
    ALGORITHM_REGISTRY.load()  # every algorithm and dataset class imported and registered
    DATASET_REGISTRY.load()
    from domainbed.scripts.collect_results import collect_results
    for fmt in ("text", "latex", "markdown", "json"):
        with_registries = collect_results(str(tmp_path), fmt, save=False)
        if fmt == "text":
            assert with_registries == torch_free
        _, out, _ = run_command("domainbed.scripts.collect_results",
                                ["--input_dir", str(tmp_path), "--no_save"]
                                + ([] if fmt == "text" else [f"--{fmt}"]))
        assert out == with_registries, fmt
    rows = [line.split()[0] for line in torch_free.splitlines()
            if line.split() and line.split()[0] in ("ERM", "CORAL", "MA", "SWAD")]
    assert rows[:4] == ["ERM", "CORAL", "MA", "SWAD"]  # ALGORITHMS order
    assert "C                     L                     S" in torch_free  # VLCS labels


def test_an_unregistered_name_comes_after_the_registered_ones_without_torch(tmp_path):
    write_small_sweep(str(tmp_path), algorithms=("NotRegistered", "ERM"))
    code, out, heavy = run_command("domainbed.scripts.collect_results",
                                   ["--input_dir", str(tmp_path), "--no_save"])
    assert code == 0 and heavy == []
    rows = [line.split()[0] for line in out.splitlines()
            if line.startswith(("ERM", "NotRegistered"))]
    assert rows[:2] == ["ERM", "NotRegistered"]


def test_list_top_hparams_imports_no_torch(tmp_path):
    write_small_sweep(str(tmp_path))
    code, out, heavy = run_command(
        "domainbed.scripts.list_top_hparams",
        ["--input_dir", str(tmp_path), "--dataset", "PACS", "--algorithm", "CORAL",
         "--test_env", "1", "--selection_method", "oracle"])
    assert code == 0 and heavy == []
    assert out.startswith("Model selection: test-domain validation set (oracle)")
    assert "Trial seed 0:" in out and "Trial seed 1:" in out


def test_sweep_status_of_the_core_imports_no_torch(tmp_path):
    argv = ["status", "--output_dir", str(tmp_path), "--datasets", "PACS", "Debug28",
            "--algorithms", "ERM", "SWAD", "--n_hparams", "2", "--n_trials", "1"]
    from domainbed.scripts.sweep_args import build_parser, jobs_from_args
    jobs = jobs_from_args(build_parser().parse_args(argv))
    os.makedirs(jobs[0].output_dir)
    with open(os.path.join(jobs[0].output_dir, "done"), "w") as f:
        f.write("done")
    os.makedirs(jobs[1].output_dir)
    code, out, heavy = run_command("domainbed.scripts.sweep", argv, no_plugins=True)
    assert code == 0 and heavy == []
    # PACS: 4 single + 6 pair test envs, Debug28: 3 + 3; x 2 algorithms x 2 hparams seeds
    assert out.splitlines()[0] == ("64 jobs: 1 done, 1 incomplete, 0 running, 0 queued, "
                                   "0 failed, 62 not launched")


def test_sweep_job_ids_and_seeds_do_not_depend_on_torch_being_imported(tmp_path):
    """The torch-free seed_hash and environment counts give the jobs the registries give."""
    argv = ["status", "--output_dir", str(tmp_path), "--datasets", "VLCS", "--algorithms",
            "ERM", "--n_hparams", "1", "--n_trials", "1", "--upstream_job_ids"]
    code = ("import json, sys\n"
            "from domainbed.scripts.sweep_args import build_parser, jobs_from_args\n"
            f"jobs = jobs_from_args(build_parser().parse_args({argv!r}))\n"
            "print(json.dumps([[j.job_id, j.train_args['seed']] for j in jobs]))\n"
            "print('torch' in sys.modules)\n")
    env = dict(os.environ, PYTHONPATH=REPO)
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, cwd=REPO, check=True).stdout.splitlines()
    from domainbed.datasets.registry import DATASET_REGISTRY
    DATASET_REGISTRY.load()  # in this process the classes answer
    from domainbed.lib.misc import seed_hash
    from domainbed.lib.seeds import seed_hash as torch_free_seed_hash
    from domainbed.scripts.sweep_args import build_parser, jobs_from_args
    jobs = jobs_from_args(build_parser().parse_args(argv))
    assert json.loads(lines[0]) == [[j.job_id, j.train_args["seed"]] for j in jobs]
    assert len(jobs) == 4 + 6  # VLCS: 4 environments
    for args in [(0, 1, "PACS", "ERM", [0, 1], 3), ("embedded", "x", 2), ()]:
        assert torch_free_seed_hash(*args) == seed_hash(*args)


def test_the_indexes_list_what_the_registrations_register():
    """Every indexed name, read from source, is registered by its module with the same
    metadata; every registered class was indexed; datasets get their declared
    environments."""
    from domainbed.algorithms.registry import ALGORITHM_REGISTRY, algorithm_names
    from domainbed.datasets.base import MultipleDomainDataset
    from domainbed.datasets.registry import DATASET_REGISTRY, dataset_names
    for registry in (ALGORITHM_REGISTRY, DATASET_REGISTRY):
        index = dict(registry.index())
        registry.load()
        assert set(registry.loaded()) >= set(index)
        for name, entry in index.items():
            obj = registry.get(name)
            assert obj.__module__ == entry.module, name
    # the indexed names (test modules collected in this process may register more at run time)
    indexed = [n for n in algorithm_names() if n in ALGORITHM_REGISTRY.index()]
    assert indexed[-7:] == ["MA", "SWAD", "InterTraining", "Ratatouille", "Fusing",
                            "LinearProbe", "LPFT"]
    indexed = [n for n in dataset_names() if n in DATASET_REGISTRY.index()]
    assert indexed[-3:] == ["ImageFolder", "WILDSRxRx1", "WILDSiWildCam"]
    for name, entry in DATASET_REGISTRY.index().items():
        cls = DATASET_REGISTRY.get(name)
        envs = entry.metadata["environments"]
        assert (None if envs is None else list(envs)) == cls.ENVIRONMENTS, name
        from_data = cls.environments.__func__ is not MultipleDomainDataset.environments.__func__
        assert entry.metadata["environments_from_data"] == from_data, name


@pytest.mark.parametrize("dataset", ["PACS", "WILDSCamelyon", "ImageFolder"])
def test_the_index_answers_as_the_dataset_class(dataset, tmp_path):
    from domainbed.datasets import registry
    if dataset == "ImageFolder":
        for domain in ("a", "b"):
            os.makedirs(tmp_path / domain / "cls")
    cls = registry.get_dataset_class(dataset)
    assert registry.num_environments(dataset, str(tmp_path)) == len(
        cls.environments(str(tmp_path)))
    assert registry.declared_environments(dataset) == (
        None if cls.ENVIRONMENTS is None else list(cls.ENVIRONMENTS))


def test_sweep_status_of_a_ratatouille_sweep_with_the_plugin_imports_no_torch(tmp_path):
    """The plugin's torch-free part (domainbed.sweep_plugins) is enough to list the job ids
    of a recipe sweep: no pool, no probe, no file written, no torch."""
    (tmp_path / "aux").mkdir()
    (tmp_path / "out").mkdir()
    argv = ["status", "--output_dir", str(tmp_path / "out"), "--datasets", "PACS",
            "--algorithms", "ERM", "Ratatouille", "Fusing", "--n_hparams", "2",
            "--n_trials", "1", "--aux_dir", str(tmp_path / "aux"), "--output_dir_lp",
            str(tmp_path / "lp"), "--hparams_space", "mild"]
    before = _tree(tmp_path)
    code, out, heavy = run_command("domainbed.scripts.sweep", argv)
    assert code == 0 and heavy == [], out
    assert out.splitlines()[0].startswith("60 jobs: 0 done")  # 10 test env sets x 3 x 2
    assert _tree(tmp_path) == before


def test_status_job_ids_equal_the_launch_listing(tmp_path):
    """Planning the init files (launch) and skipping it (status) give the same job ids."""
    from domainbed.lib.weights import save_weights
    from domainbed.scripts.sweep_args import build_parser, jobs_from_args
    from domainbed.sweep.options import list_jobs
    from domainbed.scripts.sweep_args import from_namespace
    from domainbed import networks
    phi = str(tmp_path / "phi.safetensors")
    save_weights(phi, networks.Featurizer((3, 28, 28), {"backbone": "tiny_cnn"}).state_dict())
    for extra in (["--dataset", "Debug28", "--test_env", "0", "--algorithms", "ERM", "LPFT",
                   "CORAL", "--output_dir_lp", str(tmp_path / "lp")],
                  ["--dataset", "Debug28", "--test_env", "-1", "--algorithms", "ERM"]):
        argv = ["--output_dir", str(tmp_path / "out"), "--n_hparams", "3", "--n_trials", "2",
                "--pretrained_featurizer", phi, "--hparams", '{"backbone": "tiny_cnn"}',
                *extra]
        listed = jobs_from_args(build_parser().parse_args(["launch", *argv]))
        status_args = from_namespace(build_parser().parse_args(["status", *argv]), mode="ids")
        assert [j.job_id for j in list_jobs(status_args)] == [j.job_id for j in listed]
