"""A sweep folder remembers its spec: ``status`` and ``delete_incomplete`` given only
``--output_dir`` (or some of the flags) use it, and a flag that differs from it is named."""

import json
import os

from domainbed.lib import run_dir
from domainbed.scripts import sweep as sweep_cli
from domainbed.scripts import sweep_args
from domainbed.sweep import memory
from tests.fixtures.sweeps import SWEEP_24, cli_jobs, write_fake_train


def _launched(tmp_path):
    out = tmp_path / "sweep"
    (tmp_path / "data").mkdir()
    assert sweep_cli.main(["launch", "--output_dir", str(out), "--data_dir",
                           str(tmp_path / "data"), "--command_launcher", "local",
                           "--skip_confirmation", *SWEEP_24],
                          train_command=write_fake_train(tmp_path)) == 0
    return out


def test_a_real_launch_writes_the_spec_and_status_needs_only_the_folder(tmp_path, capsys):
    out = _launched(tmp_path)
    stored = json.loads((out / memory.SPEC_FILE).read_text())["spec"]
    assert stored["datasets"] == ["Debug28"] and stored["n_hparams"] == 2
    assert stored["checkpoint_freq"] == 2 and "data_dir" not in stored
    capsys.readouterr()
    assert sweep_cli.main(["status", "--output_dir", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("24 jobs: 24 done")
    # one flag fewer than at launch: still the launched sweep, not "24 not launched"
    assert sweep_cli.main(["status", "--output_dir", str(out), *SWEEP_24[:-2]]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("24 jobs: 24 done")


def test_a_flag_that_differs_from_the_launch_is_named(tmp_path, capsys):
    out = _launched(tmp_path)
    capsys.readouterr()
    assert sweep_cli.main(["status", "--output_dir", str(out), "--n_hparams", "3"]) == 0
    captured = capsys.readouterr()
    assert "sweep status: note: --n_hparams 3 differs from the sweep's launch (2, in " \
           "sweep.json); using the value given" in captured.err
    assert captured.out.splitlines()[0].startswith("36 jobs: 24 done")


def test_delete_incomplete_with_only_the_folder_deletes_the_launched_jobs(tmp_path):
    out = _launched(tmp_path)
    jobs = cli_jobs(out)
    os.unlink(os.path.join(jobs[3].output_dir, run_dir.DONE))
    assert sweep_cli.main(["delete_incomplete", "--output_dir", str(out),
                           "--skip_confirmation"]) == 0
    assert [j.state for j in jobs].count(run_dir.NOT_LAUNCHED_STATE) == 1
    assert jobs[3].state == run_dir.NOT_LAUNCHED_STATE


def test_listing_with_the_dummy_launcher_writes_no_spec(tmp_path):
    out = tmp_path / "sweep"
    (tmp_path / "data").mkdir()
    assert sweep_cli.main(["launch", "--output_dir", str(out), "--data_dir",
                           str(tmp_path / "data"), "--command_launcher", "dummy",
                           "--skip_confirmation", *SWEEP_24]) == 0
    assert not out.exists()


def test_typed_options_reads_flags_equals_and_abbreviations():
    parser = sweep_cli.build_parser()
    typed = sweep_args.typed_options(parser, ["status", "--output_dir", "o", "--n_hparams=3",
                                          "--dataset", "VLCS", "--n_tri", "2"])
    assert {"output_dir", "n_hparams", "dataset", "datasets", "n_trials"} <= typed
    assert "algorithms" not in typed
