"""Bad inputs of ``python -m domainbed.scripts.sweep``: one line per problem, exit status 2,
and the sweep folder never created (listing, launching, status and delete alike)."""

import pytest

from domainbed.scripts import sweep as sweep_cli
from tests.domainbed.bad_inputs.common import assert_one_error, run_cli

SMALL = ["--datasets", "Debug28", "--algorithms", "ERM", "--n_hparams", "1", "--n_trials", "1"]

# (id, command, extra flags, fragment); each replaces SMALL's flags of the same name
CASES = [
    ("n_hparams_zero", "launch", ["--n_hparams", "0"], "--n_hparams: 0 is not an integer >= 1"),
    ("n_hparams_negative", "launch", ["--n_hparams", "-1"], "--n_hparams: -1 is not"),
    ("n_hparams_from_too_big", "launch", ["--n_hparams_from", "3"],
     "--n_hparams_from 3 >= --n_hparams 1: the sweep would have no job"),
    ("n_hparams_from_negative", "launch", ["--n_hparams_from", "-1"],
     "--n_hparams_from: -1 is not an integer >= 0"),
    ("n_trials_zero", "launch", ["--n_trials", "0"], "--n_trials: 0 is not an integer >= 1"),
    ("seed_negative", "launch", ["--seed", "-1"], "--seed: -1 is not an integer >= 0"),
    ("steps_zero", "launch", ["--steps", "0"], "--steps: 0 is not an integer >= 1"),
    ("steps_negative", "launch", ["--steps", "-5"], "--steps: -5 is not"),
    ("checkpoint_freq_zero", "launch", ["--checkpoint_freq", "0"], "--checkpoint_freq: 0"),
    ("holdout_above_one", "launch", ["--holdout_fraction", "1.5"],
     "--holdout_fraction: 1.5 is not a finite number in (0, 1)"),
    ("holdout_zero", "launch", ["--holdout_fraction", "0"], "--holdout_fraction: 0.0 is not"),
    ("holdout_nan", "launch", ["--holdout_fraction", "nan"], "--holdout_fraction: NaN"),
    ("test_env_out_of_range", "launch", ["--test_env", "7"],
     "--test_env 7 is out of range for Debug28"),
    ("test_env_below_minus_one", "launch", ["--test_env", "-3"], "--test_env: -3 is not"),
    ("dataset_misspelt", "launch", ["--datasets", "VCLS"], "did you mean 'VLCS'?"),
    ("dataset_unknown", "launch", ["--datasets", "NoSuchSet"], "'NoSuchSet' is not a known "
                                                               "dataset"),
    ("dataset_case", "launch", ["--datasets", "pacs"], "did you mean 'PACS'?"),
    ("algorithm_unknown", "launch", ["--algorithms", "Foo"], "'Foo' is not a known algorithm"),
    ("algorithm_case", "launch", ["--algorithms", "erm"], "did you mean 'ERM'?"),
    ("dataset_and_datasets", "launch", ["--dataset", "VLCS", "--datasets", "PACS"],
     "give either --dataset D or --datasets D1 D2 ..., not both"),
    ("hparams_not_json", "launch", ["--hparams", "{bad"], "--hparams is not valid JSON"),
    ("hparams_a_list", "launch", ["--hparams", "[1]"], "--hparams must be a JSON object"),
    ("hparams_unknown_key", "launch", ["--hparams", '{"lrr": 1}'],
     "unknown hyperparameter 'lrr' in --hparams"),
    ("hparams_lr_negative", "launch", ["--hparams", '{"lr": -1}'], "--hparams lr: -1 is not"),
    ("hparams_batch_zero", "launch", ["--hparams", '{"batch_size": 0}'],
     "--hparams batch_size: 0 is not an integer >= 1"),
    ("hparams_lr_nan", "launch", ["--hparams", '{"lr": NaN}'], "--hparams lr: NaN is not"),
    ("hparams_wd_infinite", "launch", ["--hparams", '{"weight_decay": Infinity}'],
     "--hparams weight_decay: Infinity is not"),
    ("hparams_dropout_one", "launch", ["--hparams", '{"resnet_dropout": 1}'],
     "--hparams resnet_dropout: 1 is not"),
    ("train_extra_not_json", "launch", ["--train_extra", "{bad"],
     "--train_extra must be a JSON object"),
    ("train_extra_a_list", "launch", ["--train_extra", "[1]"],
     "--train_extra must be a JSON object of flag: value"),
    ("train_extra_reserved", "launch", ["--train_extra", '{"seed": 1}'],
     "--train_extra.seed: set by the sweep (or recipe) itself"),
    ("train_extra_unknown", "launch", ["--train_extra", '{"full_evaluaton": true}'],
     "did you mean 'full_evaluation'?"),
    ("train_extra_workers", "launch", ["--train_extra", '{"num_workers": -1}'],
     "--train_extra.num_workers: -1 is not"),
    ("train_extra_precision", "launch", ["--train_extra", '{"precision": "fp8"}'],
     "--train_extra.precision: 'fp8' is not one of"),
    ("train_extra_flag_text", "launch", ["--train_extra", '{"full_evaluation": "yes"}'],
     "--train_extra.full_evaluation: 'yes' is not true or false"),
    ("launcher_unknown", "launch", ["--command_launcher", "nope"],
     "unknown command launcher 'nope'"),
    ("fusing_range_nan", "launch", ["--fusing_range", "nan"], "--fusing_range: NaN is not"),
    ("lp_steps_total_zero", "launch", ["--lp_steps_total", "0"], "--lp_steps_total: 0 is not"),
    ("max_parallel_zero", "launch", ["--max_parallel", "0"], "--max_parallel: 0 is not"),
    ("threads_per_job_zero", "launch", ["--threads_per_job", "0"], "--threads_per_job: 0"),
    ("jobs_per_gpu_zero", "launch", ["--jobs_per_gpu", "0"], "--jobs_per_gpu: 0 is not"),
    ("hparams_space_unknown", "launch", ["--hparams_space", "wild"],
     "--hparams_space 'wild' is not one of"),
    ("stage_without_plan", "launch", ["--stage", "target"],
     "--stage and --only select stages of a multi-stage plan"),
    ("status_n_trials_zero", "status", ["--n_trials", "0"], "--n_trials: 0 is not"),
    ("status_unknown_dataset", "status", ["--datasets", "VCLS"], "did you mean 'VLCS'?"),
    ("delete_n_hparams_zero", "delete_incomplete", ["--n_hparams", "0"], "--n_hparams: 0"),
    ("status_bad_hparams", "status", ["--hparams", '{"lr": -1}'], "--hparams lr: -1 is not"),
    ("status_recipe", "status", ["--recipe", "sweeps/embedded.json"],
     "a multi-stage plan runs with launch only"),
]

# (id, extra flags, fragment): argparse's own refusals
ARGPARSE_CASES = [
    ("n_hparams_text", ["--n_hparams", "abc"], "invalid int value: 'abc'"),
    ("task_unknown", ["--task", "dg"], "invalid choice: 'dg'"),
    ("pool_kind_unknown", ["--aux_pool_kind", "weird"], "invalid choice: 'weird'"),
    ("ambiguous_flag", ["--n_hparam", "2"], "ambiguous option: --n_hparam could match"),
    ("unknown_flag", ["--n_hparamz", "2"], "unrecognized arguments: --n_hparamz 2"),
    ("command_unknown", ["--datasets", "Debug28"], "invalid choice: 'lunch'"),
]


def _merge(base, extra):
    """``base`` with the flags of ``extra`` replaced (or added)."""
    out, i = [], 0
    names = {a for a in extra if a.startswith("--")}
    while i < len(base):
        if base[i] in names:
            i += 1
            while i < len(base) and not base[i].startswith("--"):
                i += 1
            continue
        out.append(base[i])
        i += 1
    return out + list(extra)


def _argv(tmp_path, command, extra):
    (tmp_path / "data").mkdir(exist_ok=True)
    flags = ["--output_dir", str(tmp_path / "sweep"), "--data_dir", str(tmp_path / "data")]
    if command == "launch":
        flags += ["--command_launcher", "dummy", "--skip_confirmation"]
    elif command == "delete_incomplete":
        flags += ["--skip_confirmation"]
    return [command] + _merge(SMALL + flags, extra)


@pytest.mark.parametrize("command, extra, fragment", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_sweep_input(tmp_path, capsys, monkeypatch, command, extra, fragment):
    from tests.fixtures.paths import REPO
    monkeypatch.chdir(REPO)  # --recipe sweeps/... as a user types it in the clone
    code, lines = run_cli(sweep_cli.main, _argv(tmp_path, command, extra), capsys)
    assert code == 2
    assert_one_error(lines, fragment)
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("extra, fragment", [c[1:] for c in ARGPARSE_CASES],
                         ids=[c[0] for c in ARGPARSE_CASES])
def test_bad_sweep_flag(tmp_path, capsys, extra, fragment):
    argv = _argv(tmp_path, "launch", extra)
    if fragment.startswith("invalid choice: 'lunch'"):
        argv[0] = "lunch"
    code, lines = run_cli(sweep_cli.main, argv, capsys)
    assert code == 2
    assert_one_error(lines, fragment)
    assert not (tmp_path / "sweep").exists()


def test_every_sweep_problem_at_once(tmp_path, capsys):
    code, lines = run_cli(sweep_cli.main, _argv(tmp_path, "launch", [
        "--n_trials", "0", "--steps", "0", "--hparams", '{"lr": -1}', "--datasets", "VCLS"]),
        capsys)
    assert code == 2
    assert_one_error(lines, "--n_trials: 0", n=3)  # the hparams need a known dataset first
    assert not (tmp_path / "sweep").exists()


def test_launch_without_output_dir(tmp_path, capsys):
    code, lines = run_cli(sweep_cli.main, ["launch", *SMALL, "--command_launcher", "dummy"],
                          capsys)
    assert code == 2
    assert_one_error(lines, "--output_dir is required")


def test_a_real_launch_with_a_missing_data_dir(tmp_path, capsys):
    argv = _merge(_argv(tmp_path, "launch", []), ["--command_launcher", "local",
                                                  "--data_dir", str(tmp_path / "nodata")])
    code, lines = run_cli(sweep_cli.main, argv, capsys)
    assert code == 2
    assert_one_error(lines, "does not exist or is not a folder")
    assert not (tmp_path / "sweep").exists()


def test_an_aux_dir_that_does_not_exist(tmp_path, capsys):
    argv = _merge(_argv(tmp_path, "launch", []), ["--aux_dir", str(tmp_path / "noaux"),
                                                  "--algorithms", "Ratatouille"])
    code, lines = run_cli(sweep_cli.main, argv, capsys)
    assert code == 2
    assert_one_error(lines, "auxiliary directory")
    assert not (tmp_path / "sweep").exists()


def test_a_pretrained_featurizer_that_does_not_exist(tmp_path, capsys):
    argv = _merge(_argv(tmp_path, "launch", []), [
        "--pretrained_featurizer", str(tmp_path / "nophi.safetensors"), "--output_dir_lp",
        str(tmp_path / "lp")])
    code, lines = run_cli(sweep_cli.main, argv, capsys)
    assert code == 2
    assert_one_error(lines, "nophi.safetensors")
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "lp").exists()
