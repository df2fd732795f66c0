"""A non-finite loss stops the run at that step: it ends as finished with a last record that
says ``diverged``, no final model, and status, tables and pools say so."""

import json

import pytest

from domainbed.lib import run_dir
from domainbed.scripts import train as train_script
from domainbed.training.loop import nonfinite

# lr 1e30 turns the tiny CNN's loss into NaN at the second step
EXPLODING = json.dumps({"batch_size": 8, "backbone": "tiny_cnn", "lr": 1e30})


@pytest.fixture(scope="module")
def diverged_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("diverged") / "run"
    code = train_script.main(["--dataset", "Debug28", "--steps", "20", "--checkpoint_freq",
                              "5", "--output_dir", str(out), "--hparams", EXPLODING])
    return out, code


def _records(out):
    return [json.loads(line) for line in (out / run_dir.RESULTS).read_text().splitlines()]


def test_the_first_non_finite_loss_ends_the_run_as_diverged(diverged_run):
    out, code = diverged_run
    assert code == 0  # a finished run, not a failed one: a sweep does not relaunch it
    assert (out / run_dir.DONE).exists() and not (out / run_dir.FAILED).exists()
    records = _records(out)
    last = records[-1]
    assert last["diverged"] is True and last["nonfinite"] == {"loss": "nan"}
    assert last["step"] == 1 and len(records) == 2  # stopped at once: no step after it
    # every split scored with the diverged model, as a collapsed run's record
    assert all(isinstance(last[f"env{i}_{s}_acc"], float) for i in range(3)
               for s in ("in", "out"))
    assert not (out / run_dir.MODEL).exists()  # NaN weights never become a final model
    marker = json.loads((out / run_dir.DIVERGED).read_text())
    assert marker == {"step": 1, "nonfinite": {"loss": "nan"}}
    log = (out / run_dir.ERR).read_text()
    assert log.count("diverged at step 1: non-finite loss=nan") == 1


def test_status_and_collect_results_list_the_diverged_run(diverged_run, tmp_path, capsys):
    out, _ = diverged_run
    from domainbed.scripts import collect_results
    from domainbed.sweep import actions
    from domainbed.sweep.jobs import Job
    job = Job({"dataset": "Debug28"}, str(out.parent))
    job.output_dir = str(out)
    report = actions.status([job])
    assert report.splitlines()[0].startswith("1 jobs: 1 done")
    assert any(line.startswith("Diverged ") and "loss=nan at step 1" in line
               for line in report.splitlines())
    assert collect_results.main(["--input_dir", str(out.parent), "--no_save"]) == 0
    err = capsys.readouterr().err
    assert f"1 run diverged (non-finite loss; counted with the scores of the diverged " \
           f"model): {out}" in err


def test_a_diverged_auxiliary_run_never_enters_a_pool(diverged_run):
    from domainbed_aux.pool import runs
    out, _ = diverged_run
    status, found = runs.read_run_member(str(out), str(out.parent), None, False)
    assert (status, found) == (runs.DIVERGED, None)


def test_nonfinite_finds_nan_and_infinities_only():
    assert nonfinite({"loss": 0.5, "n": 3, "name": "x"}) == {}
    assert nonfinite({"loss": float("inf"), "penalty": float("nan"), "ok": 1.0}) == {
        "loss": "inf", "penalty": "nan"}
