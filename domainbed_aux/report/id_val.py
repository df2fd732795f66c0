"""The ID-validation rows of Table 1: the core's training-domain validation selection over
the runs of a family (a SWAD run counts by its record of the averaged window).

Scored on ``env{test}_in``, a cell is the selection method's score of the records of one trial
seed's runs. On the whole test domain (``full_domain``), the cell is the score of the run whose
best checkpoint has the best ID-validation accuracy (the checkpoint that training-domain
validation selects), evaluated on that split.
"""

from typing import Optional, Sequence, Tuple

from domainbed.lib.query import Q

from domainbed_aux.report.registry import Table1Row, register
from domainbed_aux.scoring.runs import RunInfo, best_run


def id_val_cell(table, runs: Sequence[RunInfo], method) -> Tuple[Optional[float], None]:
    if table.split == "test_in":
        return method.sweep_acc(Q([r for run in runs for r in run.records])), None
    best = best_run(runs)

    def score() -> dict:
        from domainbed_aux.averaging.base import load_member
        return {"run": best.run_dir, "acc": table.evaluators(best).accuracy(
            load_member(best.model_path, best.run_dir), table.split)}
    return table.cached("single", "id_val", [best], score)["acc"], None


for _name, _family, _position in (
        ("Vanilla fine-tuning (ID val)", "erm", 1),
        ("LP-FT (ID val)", "lpft", 2),
        ("CORAL (ID val)", "coral", 3),
        ("SWAD (loss-aware trajectory)", "swad", 4),
        ("MA (uniform trajectory)", "ma", 5),
        ("Inter-training (ID val)", "inter", 11),
        ("Fusing (ID val)", "fusing", 13)):
    register(Table1Row(_name, _family, _position, id_val_cell))
