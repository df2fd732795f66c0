"""Model parts (featurizer / classifier key prefixes) and the one init-record format."""

import pytest
import torch

from domainbed.lib.weights import load_file, read_metadata
from domainbed_aux import parts
from domainbed_aux.init.record import (InitRecord, fused_member, init_record,
                                       pretrained_member, save_init_file)


def test_prefixes_split_and_join_a_state_dict():
    a, b, c = torch.zeros(1), torch.ones(1), torch.full((1,), 2.0)
    state = {"featurizer.conv.w": a, "classifier.w": b, "network.0.conv.w": a, "other": c}
    featurizer, classifier = parts.split_parts(state)
    assert featurizer == {"conv.w": a} and classifier == {"w": b}
    assert parts.join_parts(featurizer, classifier) == {"featurizer.conv.w": a,
                                                        "classifier.w": b}
    assert list(parts.join_parts(featurizer, classifier)) == ["featurizer.conv.w",
                                                              "classifier.w"]
    assert parts.join_parts(featurizer) == {"featurizer.conv.w": a}
    assert parts.strip_prefix(state, "network.0.") == {"conv.w": a}
    assert parts.add_prefix({"w": c}, "network.1.") == {"network.1.w": c}
    # every spelling of a part starts with that part's name or upstream's network index
    assert parts.FEATURIZER_PREFIXES == parts.PART_PREFIXES[parts.FEATURIZER][:2]
    assert parts.PART_PREFIXES[parts.CLASSIFIER][0] == parts.CLASSIFIER_PREFIX


def test_init_record_fields_and_order():
    member = pretrained_member("abc")
    record = InitRecord(member, "lp_key", "probe_sha")
    expected = {"member": member, "members": None, "lambdas": None, "u": None,
                "fusing_range": None, "robust": False, "linear_probe_key": "lp_key",
                "linear_probe": "probe_sha"}
    assert record.to_json() == expected and list(record.to_json()) == list(expected)
    assert init_record(member, "lp_key", "probe_sha") == expected
    fused = init_record(fused_member(), "k", None, members=[member], lambdas=[1.0], u=[0.5],
                        fusing_range=4.0, robust=True)
    assert fused["member"]["kind"] == "fused" and fused["lambdas"] == [1.0]
    assert fused["robust"] is True and fused["fusing_range"] == 4.0


def test_save_init_file_writes_both_parts_and_the_record(tmp_path):
    featurizer, classifier = {"w": torch.arange(3.0)}, {"b": torch.ones(2)}
    record = InitRecord(pretrained_member(None), "lp_key")
    path = save_init_file(str(tmp_path / "sub" / "init.safetensors"), featurizer, classifier,
                          record, linear_probe={"key": "lp_key"})
    state, _ = load_file(path)
    assert sorted(state) == ["classifier.b", "featurizer.w"]
    assert torch.equal(state["featurizer.w"], featurizer["w"])
    metadata = read_metadata(path)
    assert metadata["init"] == record.to_json() and metadata["linear_probe"] == {"key": "lp_key"}
    with pytest.raises(ValueError, match="record"):
        save_init_file(path, featurizer, classifier, record, init={})
