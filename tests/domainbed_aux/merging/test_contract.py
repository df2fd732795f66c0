"""Adding a rule is one file: a rule registered from this test module is offered by the merge
CLI, inference and the report (and the derived name lists), with nothing else touched."""

import json

import pytest
import torch

from domainbed.lib.weights import load_file
from domainbed_aux.merging import (MERGE_RULES, HParam, MergeRule, get_rule, register_rule,
                                   rule_names, unregister_rule)
from domainbed_aux.merging.contract import result
from domainbed_aux.merging.sources import load_weights

TOY = "toy_first_member"


class FirstMember(MergeRule):
    """A toy rule: the first member (in the soup's order), its head scaled."""

    name = TOY
    title = "toy (first member)"
    source = "this test"
    definition = "theta = the first member, classifier scaled by s"
    hparams = (HParam("s", 1.0, (1.0, 1.0001), "scale of the head"),)
    memory = "one member"

    def merge(self, inputs, hparams):
        member_id, source = inputs.members[0]
        state = {k: v.clone() for k, v in load_weights(source).items()}
        for key in state:
            if key.startswith("classifier.") or key.startswith("network.1."):
                state[key] = state[key] * float(hparams["s"])
        return result(self, state, inputs, hparams, members=[member_id])


@pytest.fixture
def toy_rule():
    register_rule(FirstMember)
    yield TOY
    unregister_rule(TOY)


def test_a_rule_registered_from_a_test_module_is_in_every_list_of_rules(toy_rule):
    from domainbed_aux.scoring.inference import selections
    from domainbed_aux.scripts import merge as merge_cli
    from domainbed_aux.scripts import report as report_cli
    assert TOY in rule_names() and isinstance(get_rule(TOY), FirstMember)
    assert TOY in rule_names(pooled=False) and TOY not in rule_names(pooled=True)
    assert TOY in selections()
    assert TOY in merge_cli.choices() and TOY in report_cli.rule_choices()
    from domainbed_aux.scripts.merge_options import rules_help
    assert f"  {TOY}: theta = the first member" in rules_help()


def test_after_unregistering_the_rule_is_gone():
    from domainbed_aux.scoring.inference import selections
    assert TOY not in MERGE_RULES and TOY not in rule_names() and TOY not in selections()


def test_the_lists_of_rules_are_asked_of_the_registry_not_kept_in_the_modules():
    from domainbed_aux.scoring import inference, soups
    assert not hasattr(soups, "SOUP_RULES") and not hasattr(soups, "soup_rules")
    assert not hasattr(inference, "SELECTIONS")
    assert rule_names(pooled=True) == ["dagger"]  # the uniform soup of every trial's runs
    assert inference.selections() == tuple(rule_names(pooled=False)) + ("ensemble",)


def test_every_rule_file_registers_a_rule_and_the_package_is_scanned():
    import pkgutil

    import domainbed_aux.merging.rules as package
    rule_names()
    modules = {info.name for info in pkgutil.iter_modules(package.__path__)}
    registered = {MERGE_RULES.get(n).__module__.rsplit(".", 1)[-1] for n in MERGE_RULES.names()}
    assert modules <= registered, modules - registered


def test_merge_inference_and_report_offer_the_toy_rule(toy_rule, probe_sweep, tmp_path, capsys,
                                                       one_thread):
    from domainbed_aux.scoring.runs import find_runs
    from domainbed_aux.scripts import inference as inference_cli
    from domainbed_aux.scripts import merge as merge_cli
    from domainbed_aux.scripts import report as report_cli
    first = find_runs([probe_sweep.erm_dir])[0]
    common = ["--dataset", "ImageFolder", "--test_env", "0", "--input_dir",
              probe_sweep.erm_dir, "--weight_selection", TOY, "--no_progress"]
    # inference
    out = tmp_path / "inference.json"
    assert inference_cli.main(common + ["--output", str(out), "--no_checks"]) == 0
    data = json.loads(out.read_text())
    assert data["rule"] == TOY and data["members"] == [first.run_dir]
    assert data["hparams"]["s"] in (1.0, 1.0001)
    assert len(data["details"]["selection"]["grid"]) == 2  # chosen on ID validation
    # merge: a model folder holding the rule's result
    folder = tmp_path / "model"
    assert merge_cli.main(common + ["--output_dir", str(folder), "--no_checks",
                                    "--rule_hparams", '{"s": 1.0}']) == 0
    merged, _ = load_file(str(folder / "model.safetensors"))
    own, _ = load_file(first.model_path)
    for key, value in merged.items():
        assert torch.equal(value, own[key]), key
    merge_json = json.loads((folder / "merge.json").read_text())
    assert merge_json["rule"] == TOY and merge_json["hparams"] == {"s": 1.0}
    assert merge_json["selection"]["rule_hparams"] == {"s": 1.0}
    # report: a row per family of soups
    capsys.readouterr()
    assert report_cli.main(["--input_dir", probe_sweep.erm_dir, "--rules", TOY, "--json",
                            "--no_cache", "--no_progress", "--no_checks"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "Model soups toy (first member)" in json.dumps(report)
    assert any(cell["rule"] == TOY for cell in report["rules"].values())


def test_unknown_rules_are_one_line_errors(probe_sweep, capsys):
    from domainbed_aux.scripts import report as report_cli
    assert report_cli.main(["--input_dir", probe_sweep.erm_dir, "--rules", "tiess",
                            "--no_cache", "--no_progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown rule 'tiess'" in err[0] and "ties" in err[0]
    assert report_cli.main(["--input_dir", probe_sweep.erm_dir, "--rules", "uniform",
                            "--no_cache", "--no_progress"]) == 1
    assert "unknown rule 'uniform'" in capsys.readouterr().err


def test_the_ablations_analysis_merges_with_any_rule(probe_sweep, tmp_path, one_thread):
    from domainbed_aux.scripts import analysis
    out = tmp_path / "ablation.json"
    assert analysis.main(["ablations", "--input_dir", probe_sweep.erm_dir, "--ablation",
                          "n_runs", "--rule", "model_stock", "--split", "id_val",
                          "--output", str(out), "--no_plot"]) == 0
    result = json.loads(out.read_text())
    assert result["rule"] == "model_stock" and result["values"] == [1, 2, 3]
    assert all(0 <= a <= 1 for a in result["accuracies"])
