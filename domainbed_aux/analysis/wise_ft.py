"""WiSE-FT: interpolate a fine-tuned run back towards its initialisation.

``theta(a) = (1 - a) theta_ft + a theta_init`` for each ``a`` of a grid (a = 0: the
fine-tuned run's weights that ``RunInfo.weights`` selects, by default its best-ID-validation
checkpoint; a = 1: where it started). ``theta_init`` is, in this order: the file given
by the caller, the run's recorded ``--init_from`` file, or the pretrained featurizer of the
run's backbone (ResNets only: a small CNN has no pretrained weights). Parts the init does
not hold (e.g. the classifier when only a featurizer was pretrained) keep their fine-tuned
values, so only the featurizer is interpolated then.

LP-FT is not a separate algorithm here: it is ERM started with ``--init_from`` a linear-probe
run (the sweep plugin's ``--output_dir_lp``), and WiSE-FT of such a run interpolates towards
``(w_lp, phi_pt)``.
"""

import logging
import os
from typing import Dict, List, Optional, Sequence

from domainbed.errors import DomainBedError
from domainbed.lib.weights import read_metadata
from domainbed_aux.analysis import lmc
from domainbed_aux.analysis.sources import compose, load_parts
from domainbed_aux.report.registry import Table1Row, register

log = logging.getLogger(__name__)

WISE_ALPHA = 0.5  # Table 1's mixing coefficient: the WiSE-FT paper's default


def init_parts(evaluator, init: Optional[str] = None) -> Dict[str, dict]:
    """The parts of the run's initialisation (see the module docstring for the order)."""
    run = evaluator.run
    path = init or run.args.get("init_from")
    if path:
        if not os.path.isabs(path) and not os.path.exists(path):
            candidate = os.path.join(run.run_dir, path)
            path = candidate if os.path.exists(candidate) else path
        return load_parts(path)
    meta = read_metadata(run.final_model_path)
    hparams = dict(meta.get("model_hparams") or run.hparams)
    from domainbed.networks.featurizer import backbone_name
    shape = meta.get("model_input_shape") or list(evaluator.dataset.input_shape)
    name = backbone_name(shape, hparams)
    if not name.startswith("resnet") or hparams.get("pretrained") is False:
        raise DomainBedError(f"{run.run_dir} has no --init_from and its backbone {name!r} has "
                             "no pretrained weights; give the initial weights with --init FILE")
    from domainbed.networks import Featurizer
    hparams["pretrained"] = True
    featurizer = Featurizer(shape, hparams)
    return {"featurizer": {k: v.detach().cpu() for k, v in featurizer.state_dict().items()}}


def wise_ft(evaluator, alphas: Sequence[float], init: Optional[str] = None,
            splits: Sequence[str] = ("test_in", "id_val")) -> Dict[str, object]:
    """Accuracy on each split of ``(1 - a) theta_ft + a theta_init`` for each ``a``."""
    run = evaluator.run
    fine_tuned = load_parts(run.model_path)
    start = init_parts(evaluator, init)
    names = [p for p in ("featurizer", "classifier") if p in start and p in fine_tuned]
    if not names:
        raise DomainBedError("the init weights share no part (featurizer / classifier) with "
                             f"the run {run.run_dir}")
    ft_flat = lmc.flatten_parts(fine_tuned, names)
    init_flat = lmc.flatten_parts(start, names)
    template = evaluator.new_model().state_dict()
    base = compose(template, fine_tuned)

    curves: Dict[str, List[float]] = {s: [] for s in splits}
    for alpha in alphas:
        mixed = lmc.unflatten_parts(lmc.mix([ft_flat, init_flat], [1.0 - alpha, alpha]))
        state = compose(base, mixed)
        for split in splits:
            curves[split].append(evaluator.accuracy(state, split))
    return {"run_dir": run.run_dir, "alphas": list(alphas), "interpolated_parts": names,
            "init": init or run.args.get("init_from") or "pretrained", "accuracies": curves}


def _table1_cell(table, runs, method):
    """Table 1's WiSE-FT cell: the run of the cell with the best ID-validation accuracy,
    interpolated ``WISE_ALPHA`` of the way back to its initialisation."""
    from domainbed_aux.scoring.runs import best_run
    best = best_run(runs)

    def interpolate() -> dict:
        curve = wise_ft(table.evaluators(best), [WISE_ALPHA], splits=[table.split])
        return {"run": best.run_dir, "alpha": WISE_ALPHA, "init": curve["init"],
                "interpolated_parts": curve["interpolated_parts"],
                "accuracies": {table.split: curve["accuracies"][table.split][0]}}
    result = table.cached("wise", str(WISE_ALPHA), [best], interpolate)
    return result["accuracies"][table.split], result


# runs trained from scratch have no initialisation to go back to: the row is then left out
register(Table1Row("WiSE-FT (a=%g)" % WISE_ALPHA, "erm", 6, _table1_cell, optional=True))
