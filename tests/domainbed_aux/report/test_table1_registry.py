"""Table 1 as a registry of rows: rows registered where they are computed, scored by the
provider in table order (no torch model involved: the rows here are fakes)."""

import importlib
from dataclasses import dataclass, field
from typing import List

import pytest

from domainbed.errors import DomainBedError
from domainbed_aux.report import registry
from domainbed_aux.report.provider import Table1Rows
from domainbed_aux.report.registry import Table1Row, row_names, table1_rows


@dataclass
class FakeRun:
    run_dir: str
    algorithm: str = "ERM"
    dataset: str = "Debug28"
    test_envs: List[int] = field(default_factory=lambda: [0])
    trial_seed: int = 0
    robust: bool = False


def test_each_row_module_registers_rows_in_table_order():
    rows = table1_rows()
    assert [r.position for r in rows] == sorted(r.position for r in rows)
    modules = {r.score.__module__ for r in rows}
    assert modules == {"domainbed_aux.report.id_val", "domainbed_aux.analysis.wise_ft",
                       "domainbed_aux.scoring.ensembles", "domainbed_aux.scoring.soups",
                       "domainbed_aux.report.members"}
    assert row_names()[:3] == ["Vanilla fine-tuning (ID val)", "LP-FT (ID val)",
                               "CORAL (ID val)"]
    assert row_names(families=["inter"]) == [
        "Inter-training (ID val)", "Ensemble* of inter-training", "Mean member: ratatouille",
        "Ratatouille uniform", "Ratatouille greedy", "Ratatouille uniform (dagger)"]
    assert registry.robust_name("MA (uniform trajectory)") == "Robust MA (uniform trajectory)"
    assert registry.robust_name("Ensemble*") == "Robust ensemble*"


def test_register_checks_family_and_position(monkeypatch):
    monkeypatch.setattr(registry, "_ROWS", dict(registry._ROWS))
    with pytest.raises(ValueError, match="unknown family"):
        registry.register(Table1Row("x", "nope", 100, lambda t, r, m: (None, None)))
    with pytest.raises(ValueError, match="one position"):
        registry.register(Table1Row("x", "erm", 1, lambda t, r, m: (None, None)))


def only_rows(monkeypatch, *rows):
    importlib.import_module("domainbed_aux.report")
    table1_rows()  # the row modules are imported before the registry is replaced
    monkeypatch.setattr(registry, "_ROWS", {r.name: r for r in rows})


def test_provider_scores_registered_rows_per_trial_and_pooled(monkeypatch):
    calls = []

    def per_run_count(table, runs, method):
        calls.append(sorted(r.run_dir for r in runs))
        return len(runs) / 10, {"n": len(runs)}

    only_rows(monkeypatch, Table1Row("Pooled", "erm", 2, per_run_count, pooled=True),
              Table1Row("Count", "erm", 1, per_run_count))
    runs = [FakeRun("a"), FakeRun("b"), FakeRun("c", trial_seed=1), FakeRun("r", robust=True),
            FakeRun("x", algorithm="Unknown"), FakeRun("y", dataset="Other")]
    provider = Table1Rows(runs)
    rows = provider([], "Debug28", None)
    assert rows == [("Count", {0: {0: 0.2, 1: 0.1}}), ("Pooled", {0: {"all": 0.3}}),
                    ("Robust count", {0: {0: 0.1}})]  # one robust trial: no pooled row
    assert calls[:2] == [["a", "b"], ["c"]]
    assert provider.details["Debug28/Count/env0/1"] == {"n": 1}
    assert provider.details["Debug28/Pooled/env0/all"] == {"n": 3}


def test_an_optional_row_is_left_out_on_error_and_others_raise(monkeypatch):
    def fails(table, runs, method):
        raise DomainBedError("no init")

    only_rows(monkeypatch, Table1Row("Optional", "erm", 1, fails, optional=True))
    provider = Table1Rows([FakeRun("a")])
    assert provider([], "Debug28", None) == []
    assert provider.skipped == {"Debug28/Optional": "no init"}
    only_rows(monkeypatch, Table1Row("Required", "erm", 1, fails))
    with pytest.raises(DomainBedError, match="no init"):
        Table1Rows([FakeRun("a")])([], "Debug28", None)
