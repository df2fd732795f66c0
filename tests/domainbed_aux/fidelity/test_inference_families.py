"""``inference`` (the paper's command) averages one family and defaults to trial seed 0."""

import pytest

from domainbed.errors import DomainBedError
from domainbed_aux.scoring.inference import run_inference
from domainbed_aux.scripts import inference
from tests.fixtures.runs import make_run, random_state

AUX_INIT = {"member": {"index": 1, "kind": "aux", "dataset": "AuxDebugA"}}
PRETRAINED_INIT = {"member": {"index": 0, "kind": "pretrained"}}


def _infer(root, **kwargs):
    return run_inference("Debug28", 0, [str(root)], "uniform", 0, progress=False,
                                   **kwargs)


def test_a_soup_of_two_algorithms_is_refused_naming_algorithms(tmp_path):
    make_run(tmp_path / "erm", random_state(0), algorithm="ERM")
    make_run(tmp_path / "coral", random_state(1), algorithm="CORAL")
    with pytest.raises(DomainBedError, match="--algorithms"):
        _infer(tmp_path)
    assert _infer(tmp_path, algorithms=["ERM"])["members"] == [str(tmp_path / "erm")]


def test_recycled_and_plain_runs_are_not_averaged_together(tmp_path):
    make_run(tmp_path / "plain", random_state(0), init=PRETRAINED_INIT)
    make_run(tmp_path / "recycled", random_state(1), init=AUX_INIT)
    with pytest.raises(DomainBedError, match="recycled"):
        _infer(tmp_path)


def test_the_cli_refuses_in_one_line_and_defaults_to_trial_seed_0(tmp_path, capsys):
    make_run(tmp_path / "erm", random_state(0), algorithm="ERM")
    make_run(tmp_path / "coral", random_state(1), algorithm="CORAL")
    make_run(tmp_path / "erm_t1", random_state(2), algorithm="ERM", trial_seed=1)
    assert inference.main(["--dataset", "Debug28", "--test_env", "0", "--input_dir",
                           str(tmp_path), "--no_progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--algorithms" in err[0]
    assert inference.parse_args(["--dataset", "D", "--test_env", "0", "--input_dir",
                                 "x"]).trial_seed == 0
    assert inference.main(["--dataset", "Debug28", "--test_env", "0", "--input_dir",
                           str(tmp_path), "--algorithms", "ERM", "--no_progress",
                           "--output", str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    assert "trial seeds [0]: 1 of 1 runs used" in out
    assert "weights averaged: best-ID-validation checkpoint" in out
