"""Safe weight files: safetensors round trips, CUDA-written files on CPU, refusing code."""

import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from domainbed.errors import WeightFileError
from domainbed.lib import weights


def test_state_round_trip_keeps_structure_and_types(tmp_path):
    state = {"step": 7, "opt": {"state": {0: {"exp_avg": torch.ones(3)}},
                                "param_groups": [{"lr": 1e-3, "params": [0]}]},
             "rng": (3, tuple(range(5)), None), "np": np.arange(4, dtype=np.uint32),
             "nan": float("nan")}
    path = str(tmp_path / "s.safetensors")
    weights.save_state(path, state, metadata={"kind": "test"})
    back, meta = weights.load_state(path)
    assert meta == {"kind": "test"}
    assert back["step"] == 7 and isinstance(back["rng"], tuple) and back["rng"][2] is None
    assert list(back["opt"]["state"]) == [0]
    assert torch.equal(back["opt"]["state"][0]["exp_avg"], torch.ones(3))
    assert back["np"].dtype == np.uint32 and back["np"].tolist() == [0, 1, 2, 3]
    assert back["nan"] != back["nan"]


def test_aliased_tensors_stored_once_and_restored(tmp_path):
    layer = torch.nn.Linear(3, 2)
    model = torch.nn.ModuleDict({"a": layer, "b": torch.nn.Sequential(layer)})
    path = str(tmp_path / "m.safetensors")
    weights.save_weights(path, model.state_dict())
    back, _ = weights.load_file(path)
    assert torch.equal(back["b.0.weight"], layer.weight.detach())
    from safetensors import safe_open
    with safe_open(path, framework="pt") as f:
        assert sorted(f.keys()) == ["a.bias", "a.weight"]  # the alias is stored once


def _retag_as_cuda(src: str, dst: str) -> None:
    """Rewrite a torch zip checkpoint so that its storages say they live on cuda:0."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                # the location string, as BINUNICODE (protocol 2) or SHORT_BINUNICODE
                tagged = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
                tagged = tagged.replace(b"\x8c\x03cpu", b"\x8c\x06cuda:0")
                assert tagged != data, "no storage location found to retag"
                data = tagged
            zout.writestr(item, data)


def test_checkpoint_written_from_cuda_loads_on_cpu(tmp_path):
    src, dst = str(tmp_path / "cpu.pt"), str(tmp_path / "cuda.pt")
    torch.save({"model_dict": {"w": torch.arange(6.0)}}, src)
    _retag_as_cuda(src, dst)
    if not torch.cuda.is_available():  # the file really is a CUDA checkpoint
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(dst, weights_only=True)
    content, _ = weights.load_file(dst, device="cpu")
    state = weights.extract_state_dict(content)
    assert state["w"].device.type == "cpu" and state["w"].tolist() == list(range(6))


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {_Payload.marker}",))


def test_pickle_with_code_payload_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    _Payload.marker = str(marker)
    path = str(tmp_path / "evil.pkl")
    torch.save({"model_dict": {"w": torch.zeros(1)}, "x": _Payload()}, path)
    with pytest.raises(WeightFileError, match="refused"):
        weights.load_file(path)
    assert not marker.exists()
    # a legacy (non-zip) pickle too
    legacy = str(tmp_path / "legacy.pkl")
    with open(legacy, "wb") as f:
        pickle.dump(_Payload(), f, protocol=2)
    with pytest.raises(WeightFileError, match="refused"):
        weights.load_file(legacy)
    assert not marker.exists()


def test_unknown_and_missing_files(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello world, not weights")
    with pytest.raises(WeightFileError, match="unknown weight file format"):
        weights.load_file(str(junk))
    with pytest.raises(WeightFileError, match="no such weight file"):
        weights.load_file(str(tmp_path / "absent.safetensors"))


def test_safetensors_header_length_starting_with_0x80_is_not_a_pickle(tmp_path):
    # find a metadata size whose header length's first byte is 0x80
    for pad in range(400):
        path = str(tmp_path / "w.safetensors")
        weights.save_weights(path, {"w": torch.ones(2)}, metadata={"pad": "x" * pad})
        with open(path, "rb") as f:
            if f.read(1) == b"\x80":
                break
    else:
        pytest.fail("no header length starting with 0x80 was produced")
    _, meta = weights.load_file(path)
    assert meta["pad"] == "x" * pad


def test_files_with_aliases_are_byte_identical_across_processes(tmp_path):
    """safetensors writes metadata keys in a per-process random order; a file with two keys
    (metadata and aliases) is written with them sorted, so the same weights give the same
    bytes in every process, and the file still loads with its aliases."""
    import subprocess
    import sys
    code = ("import hashlib, torch\n"
            "from domainbed.lib.weights import weights_bytes\n"
            "w = torch.arange(6.0).reshape(2, 3)\n"
            "state = {'network.0.weight': w, 'featurizer.weight': w, 'b': torch.ones(2)}\n"
            "print(hashlib.sha256(weights_bytes(state, {'step': 3})).hexdigest())\n")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True).stdout.strip() for _ in range(6)}
    assert len(digests) == 1
    from domainbed.lib.weights import load_file, save_weights
    w = torch.arange(6.0).reshape(2, 3)
    path = str(tmp_path / "m.safetensors")
    save_weights(path, {"network.0.weight": w, "featurizer.weight": w}, {"step": 3})
    state, meta = load_file(path)
    assert torch.equal(state["network.0.weight"], w) and torch.equal(state["featurizer.weight"], w)
    assert meta == {"step": 3}
