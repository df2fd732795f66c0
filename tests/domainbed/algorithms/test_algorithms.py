import pytest
import torch

from domainbed import algorithms, datasets, hparams_registry

CORE_ALGORITHMS = ["ERM", "CORAL", "MMD", "IRM", "VREx", "GroupDRO", "Mixup"]


def test_core_algorithms_registered():
    assert set(CORE_ALGORITHMS) <= set(algorithms.ALGORITHMS)


def _hparams(name, dataset):
    hp = hparams_registry.default_hparams(name, dataset)
    hp.update(batch_size=4, pretrained=False, resnet18=True)
    # switch penalties on early so their full path runs within 3 updates
    for key in ("irm_penalty_anneal_iters", "vrex_penalty_anneal_iters"):
        if key in hp:
            hp[key] = 1
    if name == "SANDMask":  # upstream's default tau = 1 masks every gradient (nothing moves)
        hp["tau"] = 0.5
    if name == "MLDG":  # 2 training domains and n_meta_test 2 leave no meta-train domain
        hp["n_meta_test"] = 1
    if name == "Transfer":  # 10 adversary steps per update by default: keep the test cheap
        hp["d_steps_per_g"] = 1
    return hp


@pytest.mark.parametrize("dataset_name", ["Debug28", "Debug224"])
@pytest.mark.parametrize("name", algorithms.ALGORITHMS)  # every registered one, plugins too
def test_algorithm_updates_and_predicts(name, dataset_name):
    torch.manual_seed(0)
    hp = _hparams(name, dataset_name)
    dataset = datasets.get_dataset_class(dataset_name)("", [0], hp)
    algorithm = algorithms.get_algorithm_class(name)(dataset.input_shape, dataset.num_classes,
                                                     len(dataset) - 1, hp)
    before = [p.detach().clone() for p in algorithm.parameters()]
    n = 4 if dataset_name == "Debug28" else 2  # keep the ResNet cases cheap on CPU
    minibatches = [(env.tensors[0][:n], env.tensors[1][:n]) for env in list(dataset)[1:]]
    for _ in range(3):
        values = algorithm.update(minibatches)
        assert values and all(isinstance(v, float) for v in values.values())
        assert all(torch.isfinite(torch.tensor(v)) for v in values.values())
    after = list(algorithm.parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after)), "no parameter changed"
    logits = algorithm.predict(minibatches[0][0])
    assert logits.shape == (n, dataset.num_classes)


def test_resnet_batch_norm_stays_frozen_after_train():
    hp = _hparams("ERM", "Debug224")
    hp["freeze_bn"] = True  # upstream's switch (the paper's mild space sets it)
    algorithm = algorithms.get_algorithm_class("ERM")((3, 224, 224), 2, 2, hp)
    algorithm.train()
    bns = [m for m in algorithm.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    mean = bns[0].running_mean.clone()
    x = torch.randn(2, 3, 224, 224) * 5 + 3
    algorithm.update([(x, torch.tensor([0, 1])), (x, torch.tensor([1, 0]))])
    assert torch.equal(mean, bns[0].running_mean)


def test_resnet_batch_norm_updates_its_statistics_without_freeze_bn():
    hp = _hparams("ERM", "Debug224")
    hp["freeze_bn"] = False
    algorithm = algorithms.get_algorithm_class("ERM")((3, 64, 64), 2, 2, hp)
    algorithm.train()
    bns = [m for m in algorithm.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.training for m in bns)
    mean = bns[0].running_mean.clone()
    x = torch.randn(2, 3, 64, 64) * 5 + 3
    algorithm.update([(x, torch.tensor([0, 1])), (x, torch.tensor([1, 0]))])
    assert not torch.equal(mean, bns[0].running_mean)


def test_unknown_algorithm_error_lists_names():
    with pytest.raises(KeyError, match="known algorithms: .*ERM"):
        algorithms.get_algorithm_class("Nope")
