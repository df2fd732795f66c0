"""Data-free rules stream their members from disk: each file is read tensor by tensor, and a
bounded number of members is open at any time whatever M (1 for the rules on task vectors,
2 for SLERP); the result does not depend on whether members come as files or state dicts."""

import pytest
import torch

from domainbed.lib.weights import TensorFile, load_file, save_weights
from domainbed_aux.merging import MergeInputs, get_rule, rule_names
from domainbed_aux.merging import sources


def files(tmp_path, n=6):
    g = torch.Generator().manual_seed(0)
    t0 = {"a.weight": torch.randn(8, 5, generator=g), "a.bias": torch.randn(8, generator=g),
          "bn.running_mean": torch.zeros(8), "bn.num_batches_tracked": torch.tensor(1)}
    save_weights(str(tmp_path / "theta0.safetensors"), t0)
    members, states = [], []
    for i in range(n):
        s = {k: (v + 0.1 * torch.randn(v.shape, generator=g) if k.startswith("a.") else v)
             for k, v in t0.items()}
        path = str(tmp_path / f"m{i}.safetensors")
        save_weights(path, s)
        members.append((f"m{i}", path))
        states.append((f"m{i}", s))
    return str(tmp_path / "theta0.safetensors"), t0, members, states


STREAMING = [n for n in rule_names() if get_rule(n).streams and "train_data" not in
             get_rule(n).needs and not get_rule(n).in_table1 and n != "greedy_strict"]


@pytest.mark.parametrize("name", STREAMING)
def test_members_are_files_read_one_at_a_time_and_give_the_in_memory_result(
        name, tmp_path, monkeypatch):
    theta0_path, t0, members, states = files(tmp_path)
    rule = get_rule(name)
    accs = {m: 1.0 - i / 10 for i, (m, _) in enumerate(members)}
    in_memory = rule.merge(MergeInputs(states, theta_0=t0, val_acc_of_member=accs),
                           rule.defaults())
    open_now, most = set(), [0]
    original_init, original_close = sources.FileWeights.__init__, sources.FileWeights.close

    def init(self, path):
        original_init(self, path)
        if "theta0" not in path:
            open_now.add(id(self))
            most[0] = max(most[0], len(open_now))

    def close(self):
        open_now.discard(id(self))
        original_close(self)
    monkeypatch.setattr(sources.FileWeights, "__init__", init)
    monkeypatch.setattr(sources.FileWeights, "close", close)
    monkeypatch.setattr(sources, "load_member", lambda *a, **k: pytest.fail("loaded whole"))
    from_files = rule.merge(MergeInputs(members, theta_0=theta0_path, val_acc_of_member=accs),
                            rule.defaults())
    assert most[0] == (2 if name == "slerp" else 1) and not open_now
    for key, value in in_memory.state_dict.items():
        assert torch.equal(from_files.state_dict[key], value), (name, key)


def test_a_tensor_file_reads_tensors_slices_and_aliases_as_load_file(tmp_path):
    torch.manual_seed(0)
    shared = torch.randn(4, 3)
    state = {"featurizer.w": shared, "network.0.w": shared, "h": torch.randn(3).half(),
             "b": torch.randn(2, 2).bfloat16(), "n": torch.tensor(5), "e": torch.zeros(0)}
    path = str(tmp_path / "x.safetensors")
    save_weights(path, state)
    loaded, _ = load_file(path)
    with TensorFile(path) as f:
        assert f.keys() == list(loaded)
        assert f.canonical("network.0.w") == "featurizer.w"
        for key, value in loaded.items():
            got = f.get(key)
            assert got.dtype == value.dtype and torch.equal(got, value), key
        assert torch.equal(f.get_flat("network.0.w", 2, 9), shared.reshape(-1)[2:9])
    weights = sources.open_weights(path)
    assert isinstance(weights, sources.FileWeights)
    assert weights.canonical("network.0.w") == "featurizer.w"
    weights.close()
