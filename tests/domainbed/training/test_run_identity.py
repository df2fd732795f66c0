"""A run directory holds one run: resuming or relaunching it with other arguments stops with
one line naming them (and ``--restart`` moves the old run aside), instead of mixing runs."""

import json
import os

from domainbed.lib import run_dir
from domainbed.scripts import train as train_script
from domainbed.training.run import differences
from domainbed.training.setup import identity_of

FAST = json.dumps({"batch_size": 8, "backbone": "tiny_cnn"})


def _args(out, *extra):
    return ["--dataset", "Debug28", "--output_dir", str(out), "--hparams", FAST,
            "--checkpoint_freq", "2", "--steps", "4", *extra]


def _unfinished_run(out):
    """A run killed after its last checkpoint: checkpoint and records, no ``done``."""
    assert train_script.main(_args(out, "--keep_checkpoint")) == 0
    os.unlink(out / run_dir.DONE)
    return (out / run_dir.RESULTS).read_bytes()


def _errors(capsys):
    captured = capsys.readouterr()
    return [l for l in (captured.out + captured.err).splitlines() if l.startswith("error:")]


def test_resuming_with_another_trial_seed_is_refused_and_changes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    before = _unfinished_run(out)
    capsys.readouterr()
    assert train_script.main(_args(out, "--trial_seed", "1")) == 2
    (error,) = _errors(capsys)
    assert "unfinished run of other arguments" in error
    assert "trial_seed: 0 there, 1 here" in error and "--restart" in error
    assert (out / run_dir.RESULTS).read_bytes() == before
    assert not (out / run_dir.DONE).exists() and not (out / run_dir.FAILED).exists()


def test_resuming_with_another_lr_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    _unfinished_run(out)
    capsys.readouterr()
    other = json.dumps({"batch_size": 8, "backbone": "tiny_cnn", "lr": 0.5})
    argv = _args(out)
    argv[argv.index(FAST)] = other
    assert train_script.main(argv) == 2
    (error,) = _errors(capsys)
    assert "hparams.lr: unset there, 0.5 here" in error


def test_evaluation_only_flags_and_key_order_do_not_change_the_identity(tmp_path):
    out = tmp_path / "run"
    before = _unfinished_run(out)
    same = json.dumps({"backbone": "tiny_cnn", "batch_size": 8})  # other key order
    argv = _args(out, "--full_evaluation", "--num_workers", "0")
    argv[argv.index(FAST)] = same
    assert train_script.main(argv) == 0
    assert (out / run_dir.DONE).exists()
    assert "resuming from step 4" in (out / run_dir.OUT).read_text()
    assert (out / run_dir.RESULTS).read_bytes().startswith(before)


def test_restart_moves_the_old_run_aside_and_starts_again(tmp_path):
    out = tmp_path / "run"
    assert train_script.main(_args(out)) == 0
    old = (out / run_dir.RESULTS).read_bytes()
    assert train_script.main(_args(out, "--steps", "3", "--restart")) == 0
    aside = tmp_path / ".run.old-1"
    assert (aside / run_dir.RESULTS).read_bytes() == old
    records = [json.loads(l) for l in (out / run_dir.RESULTS).read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 2] and records[-1]["args"]["steps"] == 3
    # hidden: sweeps and tables no longer count the old run
    assert [d for d, _ in run_dir.find_run_dirs(str(tmp_path))] == [str(out)]


def test_identity_leaves_out_paths_and_compares_init_files_by_name():
    a = {"dataset": "VLCS", "steps": 5, "output_dir": "/a", "data_dir": "/d",
         "init_from": "/x/lp/init_abc.safetensors", "hparams": '{"lr": 1, "b": 2}',
         "test_envs": [0], "full_evaluation": False}
    b = dict(a, output_dir="/b", data_dir="/e", init_from="/y/init_abc.safetensors",
             hparams='{"b": 2, "lr": 1}', full_evaluation=True)
    assert differences(identity_of(a), identity_of(b)) == []
    c = dict(a, init_from="/x/lp/init_def.safetensors", steps=6)
    assert differences(identity_of(a), identity_of(c)) == [
        "init_from: 'init_abc.safetensors' there, 'init_def.safetensors' here",
        "steps: 5 there, 6 here"]
