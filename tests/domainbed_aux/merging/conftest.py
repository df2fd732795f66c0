"""A tiny sweep whose runs descend from a shared linear probe, as a recipe's do: ERM runs start
from the probe file itself, "recycled" runs from an init file ``(w_lp, phi_aux)`` in the
probe folder's ``inits/`` that names the probe (its ``linear_probe_key``)."""

import os
from types import SimpleNamespace

import pytest

from tests.fixtures.model_runs import CLASSES, ENVS, FOLDER_HPARAMS, train_run

PROBE_KEY = "lp_ImageFolder_test0_trial0_000000000000"


def write_probe_and_init(lp_dir, data_dir):
    """The probe file (a seed-0 network's featurizer and head) and one init file whose
    featurizer is perturbed (a stand-in for an auxiliary featurizer)."""
    import torch
    from domainbed import algorithms, datasets, hparams_registry
    from domainbed_aux.init.record import (InitRecord, pretrained_member, save_init_file)
    from domainbed_aux.parts import split_parts
    from domainbed_aux.pool.members import content_hash, sha256_file
    hparams = dict(hparams_registry.default_hparams("ERM", "ImageFolder"), **FOLDER_HPARAMS)
    dataset = datasets.get_dataset_class("ImageFolder")(str(data_dir), [0], hparams)
    torch.manual_seed(0)
    model = algorithms.ERM(dataset.input_shape, dataset.num_classes, len(dataset) - 1, hparams)
    featurizer, classifier = split_parts(model.state_dict())
    probe = os.path.join(lp_dir, PROBE_KEY + ".safetensors")
    save_init_file(probe, featurizer, classifier,
                   InitRecord(pretrained_member(content_hash(featurizer)), PROBE_KEY))
    g = torch.Generator().manual_seed(1)
    aux = {k: (v + 0.05 * torch.randn(v.shape, generator=g) if v.is_floating_point() and
               "running" not in k else v) for k, v in featurizer.items()}
    init = os.path.join(lp_dir, "inits", "init_aux0.safetensors")
    member = {"index": 1, "kind": "aux", "dataset": "Other", "run": None, "sha256": "x"}
    save_init_file(init, aux, classifier, InitRecord(member, PROBE_KEY, sha256_file(probe)))
    return probe, init


@pytest.fixture(scope="session")
def probe_sweep(tmp_path_factory):
    """Image folders (3 domains x 3 classes), the probe and an init file under ``lp``, 3 ERM
    runs from the probe under ``sweep/erm`` and 2 InterTraining runs from the init file under
    ``sweep/inter``
    (test env 0, trial 0, 6 steps, hparams seeds 0..2: their learning rates differ)."""
    import torch
    from tests.fixtures.data import make_image_folder_fixture
    tmp = tmp_path_factory.mktemp("probe_sweep")
    data = make_image_folder_fixture(str(tmp / "data"), None, ENVS, CLASSES, n_per_class=6,
                                     size=12)
    lp = str(tmp / "lp")
    probe, init = write_probe_and_init(lp, data)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    erm, inter = [], []
    try:
        for h in range(3):
            erm.append(train_run(data, tmp / "sweep" / "erm" / f"run{h}", FOLDER_HPARAMS, h,
                                 extra=("--init_from", probe)))
        for h in range(2):
            inter.append(train_run(data, tmp / "sweep" / "inter" / f"run{h}", FOLDER_HPARAMS,
                                   h, extra=("--algorithm", "InterTraining",
                                             "--init_from", init)))
    finally:
        torch.set_num_threads(threads)
    return SimpleNamespace(root=tmp, data=data, lp=lp, probe=probe, init=init,
                           sweep=str(tmp / "sweep"), erm=erm, inter=inter,
                           erm_dir=str(tmp / "sweep" / "erm"),
                           inter_dir=str(tmp / "sweep" / "inter"))


def runs_of(folder):
    from domainbed_aux.scoring.runs import find_runs
    return find_runs([folder])
