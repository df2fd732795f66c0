"""Messages say only what happened: no report announced when none was written, the
frozen-featurizer phase in the run's out.txt, and a recipe's own output root."""

import json


from domainbed.lib.weights import load_file
from domainbed.scripts import sweep as sweep_cli
from domainbed.scripts import train as train_script

FAST = {"batch_size": 8, "backbone": "tiny_cnn"}


def test_the_frozen_featurizer_phase_reaches_the_runs_out_txt(tmp_path):
    from domainbed_aux.init.record import InitRecord, save_init_file
    source = tmp_path / "source"
    assert train_script.main(["--dataset", "Debug28", "--steps", "1", "--output_dir",
                              str(source), "--hparams", json.dumps(FAST)]) == 0
    weights, _ = load_file(str(source / "model.safetensors"))
    featurizer = {k[len("featurizer."):]: v for k, v in weights.items()
                  if k.startswith("featurizer.")}
    classifier = {k[len("classifier."):]: v for k, v in weights.items()
                  if k.startswith("classifier.")}
    member = {"index": 1, "kind": "aux", "dataset": "AuxDebugA", "run": "r", "sha256": "x"}
    init = str(tmp_path / "init_aux.safetensors")
    save_init_file(init, featurizer, classifier, InitRecord(member, "lp_key", "abc"))
    out = tmp_path / "run"
    assert train_script.main(["--dataset", "Debug28", "--algorithm", "Ratatouille",
                              "--steps", "3", "--output_dir", str(out), "--init_from", init,
                              "--hparams", json.dumps(dict(FAST, lp_steps=2))]) == 0
    log = (out / "out.txt").read_text()
    assert "featurizer frozen for the first 2 updates (init member: aux)" in log
    assert "featurizer unfrozen after 2 updates" in log


def _tiny_recipe(tmp_path):
    recipe = {"name": "tiny", "data_dir": str(tmp_path / "data"),
              "output_root": str(tmp_path / "from_recipe"), "datasets": ["Debug28"],
              "hparams": FAST, "steps": {"default": 2}, "checkpoint_freq": {"default": 1},
              "aux": None, "target": {"algorithms": ["ERM"], "n_hparams": 1, "n_trials": 1,
                                      "test_envs": [0]}}
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    (tmp_path / "data").mkdir()
    return str(path)


def test_a_recipe_run_without_its_report_stage_announces_no_report(tmp_path, capsys):
    path = _tiny_recipe(tmp_path)
    assert sweep_cli.main(["launch", "--recipe", path, "--only", "linear_probe",
                           "--command_launcher", "local", "--skip_confirmation"]) == 0
    out = capsys.readouterr().out
    assert "recipe tiny finished" in out
    assert "report.txt" not in out  # the report stage did not run: nothing to point to
    # no --output_dir: the recipe's output_root holds the work
    assert (tmp_path / "from_recipe" / "lp").is_dir()


def test_recipe_without_output_dir_uses_its_output_root(tmp_path, capsys):
    path = _tiny_recipe(tmp_path)
    assert sweep_cli.main(["launch", "--recipe", path, "--command_launcher", "dummy"]) == 0
    assert "stage target: 1 training jobs" in capsys.readouterr().out
    assert not (tmp_path / "from_recipe").exists()


def test_a_plain_sweep_still_needs_its_output_dir(tmp_path, capsys):
    assert sweep_cli.main(["launch", "--datasets", "Debug28", "--algorithms", "ERM",
                           "--command_launcher", "dummy"]) == 2
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith("sweep launch: error: --output_dir is required")
