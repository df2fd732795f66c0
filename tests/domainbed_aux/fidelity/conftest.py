"""Shared fixtures of the fidelity suite: one tiny recipe run, read by several tests.

The recipe follows the paper's stages on Debug28 (targets) with two auxiliary datasets
(``AuxDebugA``/``AuxDebugB``, registered by ``tests.fixtures.aux_datasets``) and every target
algorithm the report knows, 5 runs each (one per initialisation slot and more), one trial.
"""

import json

import pytest

from tests.fixtures.recipe_runs import prepare_recipe_subprocesses

TARGET_ALGORITHMS = ["ERM", "LPFT", "CORAL", "MA", "SWAD", "InterTraining", "Ratatouille",
                     "Fusing"]


@pytest.fixture(scope="session")
def recipe_run(tmp_path_factory):
    """Run the tiny recipe once (real local sweeps, one process per run); its output root."""
    from domainbed_aux.scripts import recipe as recipe_cli
    from tests.fixtures.aux_datasets import HPARAMS
    tmp = tmp_path_factory.mktemp("fidelity_recipe")
    with pytest.MonkeyPatch.context() as mp:
        phi = prepare_recipe_subprocesses(mp, tmp)
        recipe = {
            "name": "fidelity", "data_dir": str(tmp / "data"), "output_root": str(tmp / "out"),
            "datasets": ["Debug28"], "hparams": dict(HPARAMS, lp_steps=2),
            "steps": {"default": 5}, "checkpoint_freq": {"default": 2},
            "pretrained_featurizer": phi,
            "aux": {"datasets": ["AuxDebugA", "AuxDebugB"], "algorithm": "ERM",
                    "n_hparams": 2, "n_trials": 1},
            "target": {"algorithms": TARGET_ALGORITHMS, "n_hparams": 5, "n_trials": 1,
                       "test_envs": [0]},
            "report": {"module": "domainbed_aux.scripts.report"},
        }
        path = tmp / "recipe.json"
        path.write_text(json.dumps(recipe))
        assert recipe_cli.main(["run", str(path)]) == 0
    return tmp / "out"
