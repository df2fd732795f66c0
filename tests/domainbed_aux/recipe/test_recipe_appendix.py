"""The recipe files of the paper's appendix experiments: their stages and job counts as the
dry run and the dummy launcher list them."""

import json
import os
import re

import pytest

from domainbed_aux import recipe as recipe_lib
from domainbed_aux.scripts import recipe as recipe_cli
from tests.fixtures import datasets_extra as fx

from tests.fixtures.paths import REPO


def _path(name):
    return os.path.join(REPO, "sweeps", name)


def _counts(out):
    return {k: int(v) for k, v in re.findall(r"^stage (\w+): (\d+)", out, re.M)}


def _dry_run(capsys, name, data_dir):
    assert recipe_cli.main(["run", _path(name), "--dry_run", "--output_root", "OUT",
                            "--data_dir", str(data_dir)]) == 0
    return capsys.readouterr().out


def test_vit_recipe_d4(capsys, tmp_path):
    out = _dry_run(capsys, "ratatouille_vit.json", tmp_path)
    # probes: one per auxiliary dataset (4) and one for PACS test env 0, trial 0
    assert _counts(out) == {"linear_probe": 5, "aux": 16, "pool": 1, "target": 40,
                            "report": 1}
    assert "PACS test_env=0 ERM,Ratatouille: 40 jobs (20 hparams x 1 trials)" in out
    aux = [l.split()[0] for l in out.splitlines() if "test_env=-1" in l]
    assert aux == ["VLCS", "OfficeHome", "TerraIncognita", "DomainNet"]
    recipe = recipe_lib.load_recipe(_path("ratatouille_vit.json"))
    for spec in recipe_lib.target_sweeps(recipe) + recipe_lib.aux_sweeps(recipe):
        hparams = json.loads(spec.hparams)
        assert hparams["backbone"] == "timm:vit_base_patch16_224.augreg_in21k"


def test_camelyon_recipe_table10(capsys, tmp_path):
    out = _dry_run(capsys, "ratatouille_camelyon.json", tmp_path)
    # target: 5 hospitals x 2 algorithms x 20 hparams x 3 trials; probes: 5 aux + 5 x 3
    assert _counts(out) == {"linear_probe": 20, "aux": 20, "pool": 5, "target": 600,
                            "report": 1}
    lines = [l.strip() for l in out.splitlines() if l.strip().startswith("WILDSCamelyon")]
    assert [l.split()[1] for l in lines] == [f"test_env={i}" for i in range(5)]
    assert all("ERM,Ratatouille: 120 jobs (20 hparams x 3 trials)" in l and
               "hparams_space=mild" in l for l in lines)


def test_terra_incognita_with_iwildcam_recipe_table9(capsys, tmp_path):
    fx.make_iwildcam(str(tmp_path))  # iWildCam's domains (camera traps) come from its metadata
    out = _dry_run(capsys, "ratatouille_terra_iwildcam.json", tmp_path)
    # probes: iWildCam's own and TerraIncognita's 4 test envs x 3 trials
    assert _counts(out) == {"linear_probe": 13, "aux": 4, "pool": 4, "target": 480,
                            "report": 1}
    assert [l.split()[0] for l in out.splitlines() if "test_env=-1" in l] == ["WILDSiWildCam"]
    lines = [l for l in out.splitlines() if l.strip().startswith("TerraIncognita")]
    assert len(lines) == 4 and all("ERM,Ratatouille: 120 jobs" in l for l in lines)


@pytest.mark.parametrize("name, n_jobs", [("ratatouille_vit.json", 56),
                                          ("ratatouille_camelyon.json", 620)])
def test_dummy_launcher_lists_the_stages(capsys, tmp_path, name, n_jobs):
    from domainbed.scripts import sweep as sweep_cli
    assert sweep_cli.main(["launch", "--recipe", _path(name), "--output_dir", str(tmp_path),
                           "--data_dir", str(tmp_path / "data"),
                           "--command_launcher", "dummy"]) == 0
    out = capsys.readouterr().out
    assert f"total: {n_jobs} training jobs" in out
    assert set(_counts(out)) == {"linear_probe", "aux", "pool", "target", "report"}
