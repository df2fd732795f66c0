"""Auxiliary pool: scanning run dirs, the manifest, hashes, target exclusion, external members."""

import json
import os

import pytest
import torch

from domainbed.errors import DomainBedError
from domainbed.lib.misc import seed_hash
from domainbed.lib.weights import load_file, save_weights
from domainbed_aux.pool.build import add_external_member, build_pool, plan_pool
from domainbed_aux.pool.load import load_pool
from domainbed.lib.digests import sha256_file
from domainbed_aux.pool.members import MANIFEST


class TinyModel(torch.nn.Module):
    """The core's layout: featurizer + classifier, and ``network`` holding both again."""

    def __init__(self):
        super().__init__()
        self.featurizer = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6))
        self.classifier = torch.nn.Linear(6, 3)
        self.network = torch.nn.Sequential(self.featurizer, self.classifier)


def make_run(root, rel, dataset, hparams_seed, trial_seed, done=True, test_envs=(-1,),
             args_in_results=True, seed=None):
    """A finished (or not) fake training run; returns (run_dir, model state dict)."""
    run_dir = os.path.join(str(root), rel)
    os.makedirs(run_dir)
    torch.manual_seed(seed_hash(dataset, hparams_seed, trial_seed) if seed is None else seed)
    state = TinyModel().state_dict()
    args = {"dataset": dataset, "algorithm": "ERM", "test_envs": list(test_envs),
            "hparams_seed": hparams_seed, "trial_seed": trial_seed, "seed": 0,
            "output_dir": rel}
    hparams = {"lr": 1e-5 * (1 + hparams_seed), "batch_size": 32}
    save_weights(os.path.join(run_dir, "model.safetensors"), state,
                 metadata={"args": args, "hparams": hparams})
    with open(os.path.join(run_dir, "results.jsonl"), "w") as f:
        record = {"step": 10, "env0_in_acc": 0.5}
        if args_in_results:
            record.update(args=args, hparams=hparams)
        f.write(json.dumps(record) + "\n")
    if done:
        open(os.path.join(run_dir, "done"), "w").close()
    return run_dir, state


def featurizer_of(state):
    return {k[len("featurizer."):]: v for k, v in state.items() if k.startswith("featurizer.")}


def test_build_pool_paper_layout_order_files_and_hashes(tmp_path):
    aux = tmp_path / "aux"
    states = {}
    for dataset in ("VLCS", "OfficeHome"):
        for hs, ts in [(1, 0), (0, 1), (0, 0)]:
            _, states[(dataset, hs, ts)] = make_run(aux, f"{dataset}_notest/run_{hs}_{ts}",
                                                   dataset, hs, ts)
    pool = build_pool(str(aux), str(tmp_path / "pool"), exclude_dataset="PACS",
                      pretrained_name="resnet18-imagenet")
    assert pool.pretrained.kind == "pretrained" and pool.pretrained.name == "resnet18-imagenet"
    assert pool.pretrained.file is None
    keys = [(m.dataset, m.hparams_seed, m.trial_seed) for m in pool.aux_members]
    assert keys == [("OfficeHome", 0, 0), ("OfficeHome", 0, 1), ("OfficeHome", 1, 0),
                    ("VLCS", 0, 0), ("VLCS", 0, 1), ("VLCS", 1, 0)]
    assert pool.datasets == ["OfficeHome", "VLCS"]
    for member in pool.aux_members:
        assert not os.path.isabs(member.file) and not os.path.isabs(member.run_dir)
        assert os.path.normpath(os.path.join(pool.root, member.run_dir)) == os.path.normpath(
            str(aux / f"{member.dataset}_notest/run_{member.hparams_seed}_{member.trial_seed}"))
        assert member.sha256 == sha256_file(os.path.join(pool.root, member.file))
        weights, _ = load_file(member.path)
        expected = featurizer_of(states[(member.dataset, member.hparams_seed, member.trial_seed)])
        assert weights.keys() == expected.keys()  # prefix stripped, head dropped
        assert all(torch.equal(weights[k], expected[k]) for k in expected)
        assert member.hparams["lr"] == pytest.approx(1e-5 * (1 + member.hparams_seed))
        assert member.n_params == 4 * 6 + 6 + 6 + 6 + 6 + 6  # Linear + BN affine + BN stats
    assert len({m.arch for m in pool.aux_members}) == 1
    manifest = json.loads((tmp_path / "pool" / MANIFEST).read_text())
    assert manifest["format_version"] == 1 and manifest["excluded_dataset"] == "PACS"
    assert "path" not in manifest["members"][1]
    assert load_pool(str(tmp_path / "pool")).members == pool.members


def test_dataset_identity_comes_from_args_not_folder_names(tmp_path):
    aux = tmp_path / "aux"
    make_run(aux, "PACS_notest/r0", "OfficeHome", 0, 0)   # misleading folder name: kept
    make_run(aux, "VLCS_notest/r0", "PACS", 0, 0)         # the target in disguise: excluded
    make_run(aux, "PACSX_notest/r0", "PACSX", 0, 0)       # a name with the target as prefix
    pool = build_pool(str(aux), str(tmp_path / "pool"), exclude_dataset="PACS")
    assert [m.dataset for m in pool.aux_members] == ["OfficeHome", "PACSX"]


def test_unfinished_and_test_env_runs_are_skipped_metadata_fallback(tmp_path):
    aux = tmp_path / "aux"
    make_run(aux, "a", "VLCS", 0, 0, done=False)
    make_run(aux, "b", "VLCS", 1, 0, test_envs=(0,))
    make_run(aux, "c", "VLCS", 2, 0, args_in_results=False)   # args only in the model file
    pool = build_pool([str(aux)], str(tmp_path / "pool"))
    assert [(m.dataset, m.hparams_seed) for m in pool.aux_members] == [("VLCS", 2)]


def test_only_target_runs_or_no_runs_are_clear_errors(tmp_path):
    make_run(tmp_path / "aux", "PACS_notest/r0", "PACS", 0, 0)
    with pytest.raises(DomainBedError, match="only runs of the target dataset 'PACS'"):
        build_pool(str(tmp_path / "aux"), str(tmp_path / "pool"), exclude_dataset="PACS")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DomainBedError, match="no finished auxiliary run"):
        build_pool(str(tmp_path / "empty"), str(tmp_path / "pool2"))
    with pytest.raises(DomainBedError, match="does not exist"):
        build_pool(str(tmp_path / "missing"), str(tmp_path / "pool3"))


def test_load_pool_refuses_tampering_target_members_and_empty_pools(tmp_path):
    aux = tmp_path / "aux"
    make_run(aux, "r0", "VLCS", 0, 0)
    make_run(aux, "r1", "OfficeHome", 0, 0)
    pool = build_pool(str(aux), str(tmp_path / "pool"))
    with pytest.raises(DomainBedError, match="target dataset 'VLCS'"):
        load_pool(str(tmp_path / "pool"), target_dataset="VLCS")
    load_pool(str(tmp_path / "pool"), target_dataset="PACS")
    with pytest.raises(DomainBedError, match="already exists"):
        build_pool(str(aux), str(tmp_path / "pool"))

    victim = pool.aux_members[0]
    weights, meta = load_file(victim.path)
    weights["0.bias"] = weights["0.bias"] + 1
    save_weights(victim.path, weights, metadata=meta)
    with pytest.raises(DomainBedError, match="does not match its sha256"):
        load_pool(str(tmp_path / "pool" / MANIFEST))
    load_pool(str(tmp_path / "pool"), verify=False)  # the opt-out skips hashing only

    manifest_path = tmp_path / "pool" / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["members"] = manifest["members"][:1]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(DomainBedError, match="the pool is empty"):
        load_pool(str(tmp_path / "pool"))
    with pytest.raises(DomainBedError, match="no pool manifest"):
        load_pool(str(tmp_path / "nowhere"))


def test_pretrained_file_is_member_zero_with_hash(tmp_path):
    aux = tmp_path / "aux"
    make_run(aux, "r0", "VLCS", 0, 0)
    pretrained = {k: v for k, v in TinyModel().state_dict().items() if k.startswith("featurizer.")}
    save_weights(str(tmp_path / "pt.safetensors"), pretrained)
    pool = build_pool(str(aux), str(tmp_path / "pool"),
                      pretrained_file=str(tmp_path / "pt.safetensors"))
    assert pool.pretrained.file is not None
    assert pool.pretrained.sha256 == sha256_file(pool.pretrained.path)
    assert pool.pretrained.arch == pool.aux_members[0].arch


def test_add_external_member(tmp_path):
    aux = tmp_path / "aux"
    make_run(aux, "r0", "VLCS", 0, 0)
    make_run(aux, "r1", "VLCS", 1, 0)
    build_pool(str(aux), str(tmp_path / "pool"), exclude_dataset="PACS")
    shared = featurizer_of(TinyModel().state_dict())   # a featurizer-only file
    save_weights(str(tmp_path / "shared.safetensors"), shared)
    pool = add_external_member(str(tmp_path / "pool"), str(tmp_path / "shared.safetensors"),
                               {"dataset": "DomainNet", "name": "community-dn"})
    assert [(m.kind, m.dataset) for m in pool.members] == [
        ("pretrained", None), ("external", "DomainNet"), ("aux", "VLCS"), ("aux", "VLCS")]
    ext = pool.members[1]
    assert ext.name == "community-dn" and ext.sha256 == sha256_file(ext.path)
    weights, _ = load_file(ext.path)
    assert all(torch.equal(weights[k], shared[k]) for k in shared)
    with pytest.raises(DomainBedError, match="already in the pool"):
        add_external_member(str(tmp_path / "pool"), str(tmp_path / "shared.safetensors"),
                            {"dataset": "DomainNet"})
    with pytest.raises(DomainBedError, match="is the target"):
        add_external_member(str(tmp_path / "pool"), str(tmp_path / "shared.safetensors"),
                            {"dataset": "PACS"})
    save_weights(str(tmp_path / "other.safetensors"), {"w": torch.zeros(2)})
    with pytest.raises(DomainBedError, match="other keys or shapes"):
        add_external_member(str(tmp_path / "pool"), str(tmp_path / "other.safetensors"),
                            {"dataset": "TerraIncognita"})
    with pytest.raises(DomainBedError, match="needs metadata\\['dataset'\\]"):
        add_external_member(str(tmp_path / "pool"), str(tmp_path / "shared.safetensors"), {})
    assert len(load_pool(str(tmp_path / "pool")).members) == 4


def test_featurizer_extraction_layouts():
    from domainbed_aux.pool.members import featurizer_state_dict
    w = torch.zeros(2)
    model = {"featurizer.a": w, "network.0.a": w, "classifier.b": w}
    assert featurizer_state_dict(model) == {"a": w}
    assert featurizer_state_dict({"network.0.a": w, "network.1.b": w}) == {"a": w}  # upstream
    with pytest.raises(DomainBedError, match="no featurizer weights"):
        featurizer_state_dict({"fc.weight": w})
    assert featurizer_state_dict({"conv.weight": w}, strict=False) == {"conv.weight": w}


def test_hand_reordered_manifest_is_refused(tmp_path):
    aux = tmp_path / "aux"
    make_run(aux, "r0", "VLCS", 0, 0)
    make_run(aux, "r1", "OfficeHome", 0, 0)
    build_pool(str(aux), str(tmp_path / "pool"))
    manifest_path = tmp_path / "pool" / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["members"][1:] = manifest["members"][1:][::-1]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(DomainBedError, match="not in the fixed order"):
        load_pool(str(tmp_path / "pool"))


def tree(root):
    """Every folder and file under ``root`` with the files' bytes (to prove nothing changed)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(str(root)):
        found[os.path.relpath(dirpath, str(root))] = None
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                found[os.path.relpath(os.path.join(dirpath, name), str(root))] = f.read()
    return found


def test_plan_pool_is_the_built_pool_and_writes_nothing(tmp_path):
    aux = tmp_path / "aux"
    for dataset in ("VLCS", "OfficeHome"):
        for hs, ts in [(1, 0), (0, 1)]:
            make_run(aux, f"{dataset}_notest/run_{hs}_{ts}", dataset, hs, ts)
    make_run(aux, "PACS_notest/r0", "PACS", 0, 0)            # the target: left out
    make_run(aux, "VLCS_notest/unfinished", "VLCS", 2, 0, done=False)
    make_run(aux, "VLCS_notest/c", "VLCS", 3, 0, args_in_results=False)
    pretrained = {k: v for k, v in TinyModel().state_dict().items() if k.startswith("featurizer.")}
    save_weights(str(tmp_path / "pt.safetensors"), pretrained)
    out = tmp_path / "sweep" / "aux_pool" / "PACS"
    kwargs = dict(exclude_dataset="PACS", pretrained_file=str(tmp_path / "pt.safetensors"))
    before = tree(tmp_path)

    planned = plan_pool(str(aux), str(out), **kwargs)
    assert tree(tmp_path) == before and not (tmp_path / "sweep").exists()
    built = build_pool(str(aux), str(out), **kwargs)
    assert planned == built  # root, excluded dataset, members (order, files, hashes, hparams)
    assert [m.path for m in planned.members] == [m.path for m in built.members]
    assert [m.sha256 for m in planned.members] == [sha256_file(m.path) for m in built.members]
    assert len(planned.aux_members) == 5 and planned.pretrained.file is not None
    # a second plan over the built pool still says what (re)building would write
    after_build = tree(tmp_path)
    assert plan_pool(str(aux), str(out), **kwargs) == built
    assert tree(tmp_path) == after_build


def test_plan_pool_refuses_what_build_pool_refuses(tmp_path):
    make_run(tmp_path / "aux", "PACS_notest/r0", "PACS", 0, 0)
    with pytest.raises(DomainBedError, match="only runs of the target dataset 'PACS'"):
        plan_pool(str(tmp_path / "aux"), str(tmp_path / "pool"), exclude_dataset="PACS")
    with pytest.raises(DomainBedError, match="does not exist"):
        plan_pool(str(tmp_path / "missing"), str(tmp_path / "pool"))
    other = {"featurizer.w": torch.zeros(3)}  # another architecture than the aux runs'
    save_weights(str(tmp_path / "pt.safetensors"), other)
    make_run(tmp_path / "aux", "VLCS_notest/r0", "VLCS", 0, 0)
    for make in (plan_pool, build_pool):
        with pytest.raises(DomainBedError, match="different architectures"):
            make(str(tmp_path / "aux"), str(tmp_path / make.__name__),
                 pretrained_file=str(tmp_path / "pt.safetensors"))
    assert not (tmp_path / "plan_pool").exists()
