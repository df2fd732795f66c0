"""Shared fixtures of the fidelity suite: one tiny recipe run, read by several tests.

The recipe follows the paper's stages on Debug28 (targets) with two auxiliary datasets
(``AuxDebugA``/``AuxDebugB``, registered by ``tests.test_sweep_plugin``) and every target
algorithm the report knows, 5 runs each (one per initialisation slot and more), one trial.
"""

import json
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET_ALGORITHMS = ["ERM", "LPFT", "CORAL", "MA", "SWAD", "InterTraining", "Ratatouille",
                     "Fusing"]


def read_records(run_dir):
    with open(os.path.join(run_dir, "results.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def prepare_recipe_subprocesses(mp, tmp) -> str:
    """Let the recipe's subprocesses see the test datasets (``tests.test_sweep_plugin``),
    one torch thread each; write a fixed phi_pt file and the data folder. Returns phi_pt."""
    import torch
    from domainbed import networks
    from domainbed.lib.weights import save_weights
    from tests.test_sweep_plugin import HPARAMS
    mp.setenv("DOMAINBED_PLUGINS", "tests.test_sweep_plugin")
    mp.setenv("PYTHONPATH", REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    mp.setenv("OMP_NUM_THREADS", "1")
    torch.manual_seed(3)
    phi = str(tmp / "phi.safetensors")
    save_weights(phi, networks.Featurizer((3, 28, 28), HPARAMS).state_dict())
    (tmp / "data").mkdir()  # Debug datasets need no files
    return phi


def run_dirs(root):
    """Every run directory (holding results.jsonl) under ``root``."""
    found = []
    for path, _, files in os.walk(root):
        if "results.jsonl" in files and "done" in files:
            found.append(path)
    return sorted(found)


@pytest.fixture(scope="session")
def recipe_run(tmp_path_factory):
    """Run the tiny recipe once (real local sweeps, one process per run); its output root."""
    from domainbed_aux.scripts import recipe as recipe_cli
    from tests.test_sweep_plugin import HPARAMS
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
