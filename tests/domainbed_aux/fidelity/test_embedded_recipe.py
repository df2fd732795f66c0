"""The embedded recipe is a transposition of the paper's recipe by the paper's ratios."""

import json
import os

from domainbed import hparams_registry

from tests.fixtures.paths import REPO


def _recipe(name):
    with open(os.path.join(REPO, "sweeps", name)) as f:
        return json.load(f)


def test_embedded_settings_follow_the_papers_ratios():
    paper, ours = _recipe("ratatouille_paper.json"), _recipe("embedded.json")
    full = _recipe("embedded_full.json")
    steps = ours["steps"]["default"]
    assert ours["hparams_space"] == paper["hparams_space"] == "mild"
    # the slowest learning rate is 5x the fastest: 5x the steps the fastest needs (150)
    assert steps == 5 * 150
    # lp_steps: the paper's 200 of 5001 steps
    assert ours["hparams"]["lp_steps"] == round(200 / 5001 * steps)
    # dropout rates are the paper's, given at ResNet-50's feature width
    assert ours["hparams"]["dropout_reference_width"] == 2048
    # runs per test domain and trial: a multiple of the 5 initialisations (the paper: 20)
    n_inits = 1 + len(ours["aux"]["datasets"])
    assert n_inits == 5 and ours["target"]["n_hparams"] % n_inits == 0
    assert paper["target"]["n_hparams"] % n_inits == 0
    # aux runs per dataset: one per use of its initialisation slot in a trial
    assert ours["aux"]["n_hparams"] == ours["target"]["n_hparams"] // n_inits
    assert paper["aux"]["n_hparams"] == paper["target"]["n_hparams"] // n_inits
    # the probe has a budget of its own (fitted on features: cheap)
    assert ours["linear_probe"]["steps"] > steps
    # the README demo: the first test domains in the dataset's order, the first trial; the
    # full setting is the same recipe on every domain, with error bars
    assert ours["target"]["test_envs"] == [0, 1] and ours["target"]["n_trials"] == 1
    assert full["target"]["test_envs"] is None and full["target"]["n_trials"] >= 2
    same = {k: v for k, v in full.items() if k not in ("name", "comment", "output_root", "target")}
    assert same == {k: v for k, v in ours.items() if k in same}
    assert {k: v for k, v in full["target"].items() if k not in ("test_envs", "n_trials")} == \
        {k: v for k, v in ours["target"].items() if k not in ("test_envs", "n_trials")}


def test_the_mild_space_is_scaled_to_the_default_learning_rate():
    for dataset, default in (("EmbeddedShapes", 1e-3), ("PACS", 5e-5)):
        lrs = {hparams_registry.get_hparams("ERM", dataset, s, t, "mild")["lr"]
               for s in range(1, 30) for t in range(2)}
        assert lrs == {0.2 * default, 0.6 * default, default} or lrs == {
            float(f"{f * default:.6g}") for f in (0.2, 0.6, 1.0)}
        hp = hparams_registry.get_hparams("ERM", dataset, 3, 0, "mild")
        assert hp["weight_decay"] in (1e-6, 1e-4) and hp["resnet_dropout"] in (0, 0.1, 0.5)


def test_the_tiny_cnn_applies_feature_dropout():
    import torch
    from domainbed import networks
    x = torch.randn(8, 3, 32, 32)
    net = networks.Featurizer((3, 32, 32), {"backbone": "tiny_cnn", "resnet_dropout": 0.5})
    net.train()
    features = net(x)
    assert (features == 0).float().mean() > 0.2  # half of the features dropped
    net.eval()
    assert (net(x) == 0).float().mean() < 0.2
