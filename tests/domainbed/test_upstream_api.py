"""Upstream DomainBed's module-level API: the behaviours upstream's own tests assert
(UPSTREAM_API A.12), written anew, plus the facts of A.1-A.10 that code written for upstream
relies on."""

import os
import sys

import pytest
import torch
from torch.utils.data import TensorDataset

from domainbed import algorithms, command_launchers, datasets
from domainbed.lib import misc
from domainbed.lib.fast_data_loader import (FastDataLoader, InfiniteDataLoader,
                                            InfiniteDataLoaderWithoutReplacement)
from domainbed.scripts import collect_results, sweep

UPSTREAM_VECTOR_ARGS = {
    "dataset": "VLCS", "algorithm": "ERM", "test_envs": [1, 2], "holdout_fraction": 0.2,
    "hparams_seed": 1, "data_dir": "/checkpoint/dlp/datasets_new",
    "task": "domain_generalization", "trial_seed": 0, "seed": 360234358, "steps": 1001}


# --- sweep ----------------------------------------------------------------------------


def test_job_states_dir_and_command_str(tmp_path):
    job = sweep.Job({"foo": "bar"}, str(tmp_path))
    assert os.path.dirname(job.output_dir) == str(tmp_path)
    assert job.state == sweep.Job.NOT_LAUNCHED == "Not launched"
    assert (sweep.Job.INCOMPLETE, sweep.Job.DONE) == ("Incomplete", "Done")
    assert job.command_str == (f"python -m domainbed.scripts.train --foo bar "
                               f"--output_dir {job.output_dir}")
    assert job.train_args == {"foo": "bar", "output_dir": job.output_dir}


def test_upstream_job_ids_with_paths_match_upstreams_vector(tmp_path):
    assert misc.seed_hash("VLCS", "ERM", [1, 2], 1, 0) == 360234358
    job = sweep.Job(UPSTREAM_VECTOR_ARGS, "/sweep", hash_paths=True)
    assert job.output_dir == "/sweep/0657090f9a83ff76efe083a104fde93a"
    assert job.command_str == (
        "python -m domainbed.scripts.train --algorithm ERM --data_dir "
        "/checkpoint/dlp/datasets_new --dataset VLCS --holdout_fraction 0.2 --hparams_seed 1 "
        "--output_dir /sweep/0657090f9a83ff76efe083a104fde93a --seed 360234358 --steps 1001 "
        "--task domain_generalization --test_envs 1 2 --trial_seed 0")
    assert str(job) == ("Not launched: /sweep/0657090f9a83ff76efe083a104fde93a "
                        "('VLCS', 'ERM', [1, 2], 1)")
    # ours by default: the id does not move with the data folder
    moved = dict(UPSTREAM_VECTOR_ARGS, data_dir="/elsewhere")
    assert sweep.Job(UPSTREAM_VECTOR_ARGS, "/s").job_id == sweep.Job(moved, "/s").job_id
    assert sweep.Job(moved, "/s", hash_paths=True).job_id != job.job_id


def test_job_launch_and_delete(tmp_path):
    job = sweep.Job({"foo": "bar", "dataset": "D", "algorithm": "A", "test_envs": [0],
                     "hparams_seed": 0}, str(tmp_path))
    calls = []
    sweep.Job.launch([job], calls.append)
    assert calls == [[job.command_str]]
    train_args = {k: v for k, v in job.train_args.items() if k != "output_dir"}
    assert sweep.Job(train_args, str(tmp_path)).state == sweep.Job.INCOMPLETE
    sweep.Job.delete([job])
    assert sweep.Job(train_args, str(tmp_path)).state == sweep.Job.NOT_LAUNCHED
    (tmp_path / "x").mkdir()
    assert sweep.Job({"x": 1}, str(tmp_path)).state == sweep.Job.NOT_LAUNCHED


def test_job_launch_with_the_dummy_launcher_prints_each_command(tmp_path, capsys):
    args_list = sweep.make_args_list(1, ["Debug28"], ["ERM"], 0, 1, None, str(tmp_path),
                                     "domain_generalization", 0.2, False, None)
    jobs = [sweep.Job(a, str(tmp_path / "sweep")) for a in args_list]
    sweep.Job.launch(jobs, command_launchers.REGISTRY["dummy"])
    lines = capsys.readouterr().out.splitlines()
    assert len([line for line in lines if line.startswith("Dummy launcher:")]) == 6
    assert lines[-1] == "Launched 6 jobs!"
    assert all(os.path.isdir(j.output_dir) for j in jobs)


def test_make_args_list_is_upstreams():
    args_list = sweep.make_args_list(2, ["Debug28"], ["ERM"], 0, 3, 123, "/data",
                                     "domain_generalization", 0.2, False, None)
    assert len(args_list) == 36  # 2 trials x 6 test env sets x 3 hparams seeds
    first = args_list[0]
    assert list(first) == ["dataset", "algorithm", "test_envs", "holdout_fraction",
                           "hparams_seed", "data_dir", "task", "trial_seed", "seed", "steps"]
    for a in args_list:
        assert a["seed"] == misc.seed_hash(a["dataset"], a["algorithm"], a["test_envs"],
                                           a["hparams_seed"], a["trial_seed"])
    assert [a["trial_seed"] for a in args_list] == [0] * 18 + [1] * 18
    assert [a["hparams_seed"] for a in args_list[:3]] == [0, 1, 2]
    single = sweep.make_args_list(1, ["Debug28"], ["ERM"], 0, 1, None, "/data",
                                  "domain_generalization", 0.2, True, '{"lr": 1}')
    assert [a["test_envs"] for a in single] == [[0], [1], [2]]
    assert "steps" not in single[0] and single[0]["hparams"] == '{"lr": 1}'


def test_all_test_env_combinations():
    assert list(sweep.all_test_env_combinations(3)) == [[0], [0, 1], [0, 2], [1], [1, 2], [2]]
    assert list(sweep.all_test_env_combinations(4)) == [
        [0], [0, 1], [0, 2], [0, 3], [1], [1, 2], [1, 3], [2], [2, 3], [3]]


def test_ask_for_confirmation(monkeypatch, capsys):
    prompts = []
    monkeypatch.setattr("builtins.input", lambda p: prompts.append(p) or " Yes ")
    sweep.ask_for_confirmation()
    assert prompts == ["Are you sure? (y/n) "]
    monkeypatch.setattr("builtins.input", lambda p: "n")
    with pytest.raises(SystemExit) as info:
        sweep.ask_for_confirmation()
    assert info.value.code == 0 and capsys.readouterr().out == "Nevermind!\n"


def test_sweep_datasets_are_the_non_debug_ones_in_order():
    assert sweep.DATASETS == [d for d in datasets.DATASETS if "Debug" not in d]
    assert sweep.DATASETS[:7] == ["ColoredMNIST", "RotatedMNIST", "VLCS", "PACS",
                                  "OfficeHome", "TerraIncognita", "DomainNet"]


def test_sweep_cli_with_the_dummy_launcher(tmp_path, capsys):
    argv = ["launch", "--datasets", "Debug28", "--algorithms", "ERM", "--n_hparams", "1",
            "--n_trials", "1", "--data_dir", str(tmp_path), "--output_dir",
            str(tmp_path / "out"), "--command_launcher", "dummy", "--skip_confirmation"]
    assert sweep.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len([line for line in lines if line.startswith("Dummy launcher:")]) == 6


def test_command_launcher_names():
    assert {"local", "dummy", "multi_gpu"} <= set(command_launchers.REGISTRY)
    assert command_launchers.local_launcher is command_launchers.REGISTRY["local"]
    assert command_launchers.dummy_launcher is command_launchers.REGISTRY["dummy"]
    assert command_launchers.multi_gpu_launcher is command_launchers.REGISTRY["multi_gpu"]


def test_local_launcher_runs_command_strings(tmp_path):
    marker = tmp_path / "ran"
    command = f"{sys.executable} -c \"open({str(marker)!r}, 'w').write('ok')\""
    command_launchers.local_launcher([command])
    assert marker.read_text() == "ok"


# --- collect_results ------------------------------------------------------------------


def test_format_mean():
    assert collect_results.format_mean([0.1, 0.2, 0.3], False)[2] == "20.0 +/- 4.7"
    assert collect_results.format_mean([0.1, 0.2, 0.3], True)[2] == r"20.0 $\pm$ 4.7"
    mean, err, _ = collect_results.format_mean([0.1, 0.2, 0.3], False)
    assert mean == pytest.approx(20.0) and err == pytest.approx(100 * 0.0816496580927726 / 3 ** .5)
    assert collect_results.format_mean([], False) == (None, None, "X")


def test_print_table_text(capsys):
    table = [[1, 2], [3, 4]]
    collect_results.print_table(table, "Header text", ["R1", "R2"], ["C1", "C2"], colwidth=10,
                                latex=False)
    assert capsys.readouterr().out.splitlines() == [
        "", "-------- Header text",
        "C1" + " " * 8 + "  " + "C2" + " " * 8 + " ",
        "R1" + " " * 8 + "  " + "1" + " " * 9 + "  " + "2" + " " * 9 + " ",
        "R2" + " " * 8 + "  " + "3" + " " * 9 + "  " + "4" + " " * 9 + " "]
    assert table[0] == ["C1", "C2"] and table[1] == ["R1", 1, 2]  # changed in place


def test_print_table_latex(capsys):
    collect_results.print_table([[1, 2], [3, 4]], "Header text", ["R1", "R2"], ["C1", "C2"],
                                colwidth=10, latex=True)
    row = lambda *c: " & ".join(x.ljust(10) for x in c) + r" \\"  # noqa: E731
    assert capsys.readouterr().out.splitlines() == [
        "", r"\begin{center}", r"\adjustbox{max width=\textwidth}{%",
        r"\begin{tabular}{lcc}", r"\toprule", r"\textbf{C1 & \textbf{C2 \\", r"\midrule",
        row("R1", "1", "2"), row("R2", "3", "4"), r"\bottomrule", r"\end{tabular}}",
        r"\end{center}"]


def test_merge_records_and_helpers():
    assert collect_results.remove_key({"a": 1, "b": 2}, "a") == {"b": 2}
    frozen = collect_results.recursive_freeze({"a": [1, {2}], "b": {"c": (3,)}})
    assert hash(frozen) == hash(collect_results.recursive_freeze({"b": {"c": [3]},
                                                                  "a": (1, {2})}))
    r1 = {"args": {"x": 1, "holdout_fraction": 0.2}, "a": 1}
    r2 = {"args": {"x": 1, "holdout_fraction": 0.1}, "b": 2}
    r3 = {"args": {"x": 2, "holdout_fraction": 0.2}, "a": 3}
    merged = collect_results.merge_records([r1, r2, r3])
    assert sorted(map(sorted, merged)) == [["a", "args"], ["a", "args", "b"]]


# --- lib ------------------------------------------------------------------------------


def test_make_weights_for_balanced_classes():
    data = [(torch.zeros(1), torch.tensor(y)) for y in [0, 1, 0, 2, 3, 0]]
    weights = misc.make_weights_for_balanced_classes(data)
    assert float(weights.sum()) == pytest.approx(1.0)
    assert weights[0] == weights[2] == weights[5]
    assert float(weights[1]) == pytest.approx(3 * float(weights[0]))
    assert weights[1] == weights[3] == weights[4]


def test_seed_hash_and_print_row():
    assert misc.seed_hash(7, "lr") == misc.seed_hash(*(7, "lr"))
    assert misc.print_row([0.5, "ab"], colwidth=6) == "0.5000  ab     "
    assert misc.print_row(["a", 1], colwidth=3, latex=True) == r"a   & 1   \\"


def test_infinite_data_loader():
    dataset = TensorDataset(torch.arange(10))
    torch.manual_seed(0)
    loader = InfiniteDataLoader(dataset, None, batch_size=4, num_workers=0)
    batches = [b for _, b in zip(range(6), loader)]
    assert all(len(b[0]) == 4 for b in batches)
    with pytest.raises(ValueError):
        len(loader)
    weights = torch.zeros(10)
    weights[3] = 1.0
    only_three = InfiniteDataLoader(dataset, weights, batch_size=5, num_workers=0)
    assert [b[0].tolist() for _, b in zip(range(3), only_three)] == [[3] * 5] * 3
    no_repeat = InfiniteDataLoaderWithoutReplacement(dataset, None, batch_size=10,
                                                     num_workers=0)
    assert sorted(next(iter(no_repeat))[0].tolist()) == list(range(10))


def test_fast_data_loader_gives_one_shuffled_pass_per_iteration():
    dataset = TensorDataset(torch.arange(10))
    torch.manual_seed(0)
    loader = FastDataLoader(dataset, batch_size=4, num_workers=0)
    assert len(loader) == 3
    passes = [[x for b in loader for x in b[0].tolist()] for _ in range(2)]
    assert all(sorted(p) == list(range(10)) for p in passes)
    assert [len(b[0]) for b in loader] == [4, 4, 2]
    assert passes[0] != list(range(10)) or passes[1] != list(range(10))


# --- datasets and algorithms ----------------------------------------------------------

LABELS = {"Debug28": ["0", "1", "2"], "Debug224": ["0", "1", "2"],
          "ColoredMNIST": ["+90%", "+80%", "-90%"],
          "RotatedMNIST": ["0", "15", "30", "45", "60", "75"],
          "VLCS": ["C", "L", "S", "V"], "PACS": ["A", "C", "P", "S"],
          "OfficeHome": ["A", "C", "P", "R"], "TerraIncognita": ["L100", "L38", "L43", "L46"],
          "DomainNet": ["clip", "info", "paint", "quick", "real", "sketch"]}


def test_dataset_module_names_and_labels():
    assert datasets.DATASETS[:9] == list(LABELS)
    for name, labels in LABELS.items():
        cls = datasets.get_dataset_class(name)
        assert getattr(datasets, name) is cls and cls.ENVIRONMENTS == labels
        assert datasets.num_environments(name) == len(labels)
        assert cls.N_STEPS == 5001
    assert datasets.MultipleEnvironmentImageFolder is datasets.VLCS.__mro__[1]
    assert issubclass(datasets.Debug28, datasets.Debug)
    assert issubclass(datasets.RotatedMNIST, datasets.MultipleEnvironmentMNIST)
    with pytest.raises(NotImplementedError):
        datasets.get_dataset_class("NoSuchDataset")
    with pytest.raises(KeyError):
        datasets.get_dataset_class("NoSuchDataset")


def test_algorithms_list_upstreams_names_first_in_upstreams_order():
    names = algorithms.ALGORITHMS
    upstream = [n for n in names if n in algorithms.UPSTREAM_ALGORITHMS]
    assert names[:len(upstream)] == upstream
    assert upstream == [n for n in algorithms.UPSTREAM_ALGORITHMS if n in upstream]
    assert len(algorithms.UPSTREAM_ALGORITHMS) == len(set(algorithms.UPSTREAM_ALGORITHMS)) == 34
    assert {"MA", "SWAD"} <= set(names[len(upstream):])


def test_misc_weight_space_and_dict_helpers(tmp_path, capsys):
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    by_hand = torch.sqrt(sum(((a.state_dict()[k] - b.state_dict()[k]) ** 2).sum()
                             for k in a.state_dict()))
    assert torch.allclose(misc.distance(a, b), by_hand)
    misc.proj(0.5 * float(by_hand), a, b)
    assert float(misc.distance(a, b)) == pytest.approx(0.5 * float(by_hand), rel=1e-5)
    d1 = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([3.0])}
    d2 = {"w": torch.tensor([1.0, 0.0]), "b": torch.tensor([0.0])}
    assert float(misc.l2_between_dicts(d1, d2)) == pytest.approx((4 + 9) / 3)
    p = misc.ParamDict(d1)
    assert torch.equal((p - d2)["w"], torch.tensor([0.0, 2.0]))
    assert torch.equal((2 * p)["b"], torch.tensor([6.0])) and torch.equal((p / 2)["b"],
                                                                          torch.tensor([1.5]))
    ema = misc.MovingAverage(0.5, oneminusema_correction=False)
    assert torch.equal(ema.update({"x": torch.tensor([2.0])})["x"], torch.tensor([[1.0]]))
    assert torch.equal(ema.update({"x": torch.tensor([2.0])})["x"], torch.tensor([[1.5]]))
    batches = [(torch.full((n, 1), float(i)), torch.zeros(n)) for i, n in enumerate((3, 2, 4))]
    pairs = misc.random_pairs_of_minibatches(batches)
    assert len(pairs) == 3 and all(len(x) == len(y) for (x, _), (y, _) in pairs)
    meta = misc.split_meta_train_test(batches)
    assert len(meta) == 2 and len({float(y[0, 0]) for _, (y, _) in meta}) == 1
    tee = misc.Tee(str(tmp_path / "log.txt"), "w")
    tee.write("hello\n")
    assert (tmp_path / "log.txt").read_text() == "hello\n" and "hello" in capsys.readouterr().out
    misc.print_separator()
    assert capsys.readouterr().out == "=" * 80 + "\n"
    assert issubclass(misc.LARS, torch.optim.Optimizer)
