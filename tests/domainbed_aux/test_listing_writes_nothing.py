"""Listing a sweep writes nothing: ``sweep launch --command_launcher dummy`` and ``sweep
status`` leave every folder of a ratatouille sweep byte-identical (issue 11), while the
commands the dummy launcher prints are those a real launch then prepares."""

import json
import os
import re

import pytest

from domainbed.scripts import sweep as sweep_cli
from tests.fixtures.aux_datasets import HPARAMS, make_aux, make_phi_pt

pytestmark = pytest.mark.usefixtures("one_thread")


def _tree(root):
    """Every file under ``root`` with its bytes, and every folder."""
    out = {}
    for path, dirs, files in os.walk(root):
        out[os.path.relpath(path, root) + "/"] = None
        for name in files:
            full = os.path.join(path, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, root)] = f.read()
    return out


def _argv(tmp_path, command, *launcher):
    return [command, "--dataset", "Debug28", "--test_env", "0", "--algorithms", "ERM",
            "Ratatouille", "Fusing", "--n_hparams", "3", "--n_trials", "1", "--steps", "3",
            "--checkpoint_freq", "2", "--hparams", json.dumps(HPARAMS),
            "--output_dir", str(tmp_path / "sweep"), "--data_dir", str(tmp_path),
            "--aux_dir", str(tmp_path / "aux"), "--output_dir_lp", str(tmp_path / "lp"),
            "--pretrained_featurizer", str(tmp_path / "phi.safetensors"), *launcher]


def test_dummy_launch_and_status_leave_the_folders_byte_identical(tmp_path, capsys):
    phi = make_phi_pt(tmp_path / "phi.safetensors")
    make_aux(tmp_path, phi)
    (tmp_path / "sweep").mkdir()
    before = _tree(tmp_path)
    assert sweep_cli.main(_argv(tmp_path, "launch", "--command_launcher", "dummy",
                                "--skip_confirmation")) == 0
    listed = capsys.readouterr().out
    assert sweep_cli.main(_argv(tmp_path, "status")) == 0
    assert capsys.readouterr().out.startswith("9 jobs: 0 done")
    assert _tree(tmp_path) == before  # no pool, no probe, no init file, no phi_pt

    commands = re.findall(r"^Dummy launcher: (.*)$", listed, re.M)
    assert len(commands) == 9
    inits = [re.search(r"--init_from (\S+)", c).group(1) for c in commands]
    # the listed init files are those the launch writes: the probe for ERM, composed
    # files (pool members planned, not built) for the recycling algorithms
    from domainbed.sweep.options import list_jobs
    from domainbed.sweep.plan import launch_sweep
    from domainbed.scripts.sweep_args import from_namespace
    from domainbed.scripts.sweep_args import build_parser
    from domainbed.command_launchers import get_launcher
    spec = from_namespace(build_parser().parse_args(_argv(tmp_path, "launch")))
    launched = []

    class Recorder:
        name, dry_run = "recorder", False

        def __call__(self, jobs, **options):
            launched.extend(jobs)

    launch_sweep(spec, Recorder(), {}, skip_confirmation=True)
    assert [j.train_args["init_from"] for j in launched] == inits
    assert all(os.path.isfile(path) for path in inits)
    assert os.path.isfile(tmp_path / "sweep" / "aux_pool" / "Debug28" / "pool.json")
    assert get_launcher("dummy").dry_run and not get_launcher("local").dry_run
    assert [j.job_id for j in list_jobs(spec.replace(mode="ids"))] == \
        [j.job_id for j in launched]
