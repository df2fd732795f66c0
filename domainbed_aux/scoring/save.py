"""Soups and single runs as model folders (``domainbed.model_folder``): the weights that were
scored, the config that rebuilds them, how they were made (``merge.json``) and a card.

A folder's ``merge.json`` names each run by its path relative to the input folder that
holds it and by its id (its directory name), with the sha256 of the weight file averaged,
so re-running on the same inputs gives the same bytes wherever the folder is written.
"""

import logging
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch

from domainbed.errors import DomainBedError
from domainbed.lib.weights import read_metadata
from domainbed.lib.digests import sha256_file
from domainbed_aux.scoring.evaluation import EvaluatorCache, RunEvaluator
from domainbed_aux.scoring.runs import RunInfo

log = logging.getLogger(__name__)

SPLIT_TEXT = {
    "test_in": ("env{test}_in", "the in split of the held-out test domain {name}: the split "
                                "every row of Table 1 reports"),
    "id_val": ("ID validation", "the out (validation) splits of the training domains, "
                                "pooled"),
    "test_full": ("env{test}", "every example of the held-out test domain {name}"),
}
LOGIT_TOLERANCE = 1e-5


def run_ref(run_dir: str, input_dirs: Sequence[str]) -> str:
    """``run_dir`` relative to the input folder that holds it (else its name)."""
    for top in input_dirs:
        rel = os.path.relpath(os.path.abspath(run_dir), os.path.abspath(top))
        if not rel.startswith(os.pardir):
            return rel
    return os.path.basename(os.path.normpath(run_dir))


def _init_text(init: Optional[Mapping[str, Any]]) -> str:
    if not init:
        return "the core's initialisation (no --init_from)"
    member = init.get("member") or {}
    kind = member.get("kind")
    if kind == "pretrained":
        return "(w_lp, phi_pt): the shared linear probe on the pretrained featurizer"
    if kind == "fused":
        return "(w_lp, a fused featurizer): a weighted average of the pool's featurizers"
    if kind:
        return (f"(w_lp, phi_aux): the linear probe on auxiliary featurizers of the pool "
                f"(this run: {kind} member of {member.get('dataset')})")
    return "an --init_from weight file"


def run_entry(run: RunInfo, input_dirs: Sequence[str], kept: bool) -> Dict[str, Any]:
    """What ``merge.json`` says about one run."""
    meta = read_metadata(run.model_path)
    args = run.args
    return {"run": run_ref(run.run_dir, input_dirs),
            "run_id": os.path.basename(os.path.normpath(run.run_dir)),
            "algorithm": run.algorithm, "trial_seed": run.trial_seed,
            "hparams_seed": args.get("hparams_seed"), "seed": args.get("seed"),
            "hparams": run.hparams, "weights_file": os.path.basename(run.model_path),
            "sha256": sha256_file(run.model_path), "id_val_acc": run.id_val_acc,
            "selected_step": run.selected_record.get("step"), "kept": kept,
            "init": _init_text(run.init), "provenance": meta.get("provenance")}


def split_scores(per_trial: Mapping[str, Mapping[str, float]], test_env: int,
                 env_name: str) -> Dict[str, Any]:
    """``merge.json``'s scores: per split, the accuracy (mean over trial seeds), the split's
    name and what it is, and the value of each trial seed."""
    scores = {}
    for split, values in per_trial.items():
        if not values:
            continue
        name, text = SPLIT_TEXT.get(split, (split, split))
        scores[split] = {"accuracy": sum(values.values()) / len(values),
                         "split": name.format(test=test_env),
                         "description": text.format(name=env_name),
                         "per_trial": {str(k): v for k, v in sorted(values.items())}}
    return scores


def check_same_logits(evaluator: RunEvaluator, network: torch.nn.Module,
                      state: Mapping[str, torch.Tensor]) -> None:
    """Raise unless the folder's network gives the algorithm's logits on a fixed random
    batch (an algorithm whose ``predict`` is more than featurizer then head cannot be one
    network)."""
    model = evaluator.model(state)
    shape = tuple(model.input_shape)
    x = torch.randn((2,) + shape, generator=torch.Generator().manual_seed(0))
    x = x.to(evaluator.device)
    network.to(evaluator.device).eval()
    with torch.no_grad():
        expected, got = model.predict(x), network(x)
    if expected.shape != got.shape or not torch.allclose(expected, got, atol=LOGIT_TOLERANCE,
                                                         rtol=0):
        raise DomainBedError(
            f"{model.__class__.__name__}'s predictions are not featurizer then classifier "
            f"(largest logit difference {float((expected - got).abs().max()):.2e}); its runs "
            "cannot be saved as one network")


def build_folder(output_dir: str, state: Mapping[str, torch.Tensor], runs: Sequence[RunInfo],
                 evaluators: EvaluatorCache, merge: Dict[str, Any]) -> Dict[str, str]:
    """Check and write the model folder of ``state`` (the weights of ``runs``' family)."""
    from domainbed.datasets.input_spec import dataset_facts
    from domainbed.lib.provenance import environment_info
    from domainbed.model_folder import build_network, model_config, write_model_folder
    from domainbed.model_folder.network import network_state
    runs = sorted(runs, key=lambda r: r.order_key)  # the config is the first run's
    reference = evaluators(runs[0])
    config = model_config(read_metadata(runs[0].final_model_path),
                          sorted({r.trial_seed for r in runs}),
                          environment_info(evaluators.device),
                          dataset_facts(reference.dataset))
    network = build_network(config)
    network.load_state_dict(network_state(state))
    check_same_logits(reference, network, state)
    merge["provenance"] = config["provenance"]
    return write_model_folder(output_dir, state, config, merge)


def _training(run: RunInfo) -> Dict[str, Any]:
    args = run.args
    return {"steps": args.get("steps"), "hparams_space": args.get("hparams_space", "upstream"),
            "init": _init_text(run.init), "holdout_fraction": args.get("holdout_fraction")}


def _env_name(evaluator: RunEvaluator, test_env: int) -> str:
    names = list(getattr(evaluator.dataset, "ENVIRONMENTS", None) or [])
    return names[test_env] if 0 <= test_env < len(names) else str(test_env)


def soup_merge(result: Mapping[str, Any], runs: Sequence[RunInfo],
               input_dirs: Sequence[str], evaluators: EvaluatorCache,
               selection: Mapping[str, Any]) -> Dict[str, Any]:
    """``merge.json`` of a soup (``soups.soup``'s dict of ``runs``)."""
    runs = sorted(runs, key=lambda r: r.order_key)
    real = os.path.realpath
    kept = {real(m) for m in result["members"]}
    refs = {real(r.run_dir): run_ref(r.run_dir, input_dirs) for r in runs}
    test_env = runs[0].test_envs[0]
    trace = [dict(step, member=refs.get(real(step["member"]), step["member"]))
             for step in result.get("trace") or []]
    merge = {"rule": result["rule"], "algorithm": runs[0].algorithm,
             "selection": dict(selection, input_dirs=list(input_dirs)),
             "members": [refs[real(m)] for m in result["members"]],
             "runs": [run_entry(r, input_dirs, real(r.run_dir) in kept) for r in runs],
             "trace": trace, "soup_id_val_acc": result.get("val_acc"),
             "scores": split_scores(result.get("per_trial") or {}, test_env,
                                    _env_name(evaluators(runs[0]), test_env)),
             "weights": result.get("weights"), "bn": result.get("bn"),
             "training": _training(runs[0])}
    details = dict(result.get("details") or {})
    theta_0 = details.pop("theta_0", None)
    if "hparams" in result:  # a rule beyond uniform and greedy: how it was chosen
        merge["hparams"] = result["hparams"]
        merge["rule_details"] = details
    if theta_0:
        merge["theta_0"] = _file_ref(theta_0)
    if result.get("checks"):
        checks = dict(result["checks"])
        if checks.get("theta_0"):
            checks["theta_0"] = _file_ref(checks["theta_0"])
        merge["checks"] = checks
    return merge


def _file_ref(path: str) -> Dict[str, Any]:
    """A file by name and hash (its folder is where it happens to be on this machine)."""
    return {"file": os.path.basename(path), "sha256": sha256_file(path)}


def save_soup(output_dir: str, result: Mapping[str, Any], state: Mapping[str, torch.Tensor],
              runs: Sequence[RunInfo], input_dirs: Sequence[str], evaluators: EvaluatorCache,
              selection: Mapping[str, Any]) -> Dict[str, str]:
    """Write the model folder of a soup that ``soups.soup_and_weights`` made."""
    merge = soup_merge(result, runs, input_dirs, evaluators, selection)
    return build_folder(output_dir, state, runs, evaluators, merge)


def score_run(run: RunInfo, evaluators: EvaluatorCache, splits: Sequence[str]
              ) -> Dict[str, Any]:
    """A single run as ``soups.soup`` describes a soup of it: its weights, scored."""
    from domainbed_aux.averaging.base import load_member
    from domainbed_aux.scoring.soups import _bn_text, weights_text
    state = load_member(run.model_path, run.run_dir)
    evaluator = evaluators(run)
    per_trial = {s: {str(run.trial_seed): evaluator.accuracy(state, s)} for s in splits}
    return {"rule": "single", "members": [run.run_dir], "trace": [],
            "val_acc": run.id_val_acc, "per_trial": per_trial,
            "accuracies": {s: v[str(run.trial_seed)] for s, v in per_trial.items()},
            "weights": weights_text([run]), "bn": _bn_text(evaluator, False)}, state


def save_run(output_dir: str, run: RunInfo, input_dirs: Sequence[str],
             evaluators: EvaluatorCache, splits: Sequence[str],
             selection: Mapping[str, Any]) -> Dict[str, Any]:
    """Score one finished run on ``splits`` and write its model folder; returns the score
    dict (as ``soups.soup``'s)."""
    if len(run.test_envs) > 1:
        raise DomainBedError(f"{run.run_dir} has test envs {run.test_envs}; a model folder "
                             "names at most one held-out test domain")
    result, state = score_run(run, evaluators, splits)
    merge = soup_merge(result, [run], input_dirs or [os.path.dirname(run.run_dir)],
                       evaluators, selection) if run.test_envs else None
    if merge is None:  # every domain trained (an auxiliary run): no held-out domain
        merge = {"rule": "single", "algorithm": run.algorithm,
                 "selection": dict(selection), "members": [os.path.basename(run.run_dir)],
                 "runs": [run_entry(run, input_dirs or [os.path.dirname(run.run_dir)], True)],
                 "trace": [], "scores": {}, "weights": result["weights"],
                 "bn": result["bn"], "training": _training(run)}
    build_folder(output_dir, state, [run], evaluators, merge)
    return result


def slug(text: str) -> str:
    """A folder name for a Table 1 row: lower case, words joined by underscores."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def save_table1_models(provider, output_dir: str, input_dirs: Sequence[str]) -> List[str]:
    """A model folder per averaged cell of a built Table 1 (``report.Table1Rows`` after the
    report): ``<output_dir>/<dataset>/test<k>/<row>/trial<t>`` (dagger rows: ``all``;
    ``folder:NAME`` datasets: ``folder-NAME``). Each
    re-averages the cell's members in the order the cell kept them (the same arithmetic,
    hence the same weights; a merge rule's row: the rule at the hyperparameters the cell
    chose) and records the cell's scores; returns the folders."""
    from domainbed_aux.averaging import uniform_soup
    from domainbed_aux.merging import rule_names
    from domainbed_aux.scoring.soups import average_runs
    # a cached cell names its runs as the report that computed it found them
    by_dir = {os.path.realpath(r.run_dir): r for r in provider.runs}
    written = []
    rules = rule_names()
    for key, detail in sorted(provider.details.items()):
        if not isinstance(detail, dict) or detail.get("rule") not in rules:
            continue  # an ensemble or an ID-val row: no averaged network
        dataset, row, env, trial = key.split("/")
        runs = [by_dir[os.path.realpath(d)] for d in detail.get("candidates")
                or detail["members"]]
        members = [by_dir[os.path.realpath(d)] for d in detail["members"]]
        reference = provider.evaluators(members[0])
        live = reference.live_bn
        if "hparams" in detail:  # a merge rule's row: the cell's rule at its chosen values
            theta_0 = (detail.get("details") or {}).get("theta_0")
            averaged = average_runs(members, detail["rule"], provider.evaluators,
                                    hparams=detail["hparams"], probe=theta_0)[0]
        else:
            averaged = uniform_soup([(r.run_dir, r.model_path) for r in members],
                                    allow_live_bn=live,
                                    recompute_bn=reference.recompute_bn if live else None)
        folder = os.path.join(output_dir, dataset.replace(":", "-"), f"test{env[3:]}",
                              slug(row), f"trial{trial}" if trial.isdigit() else trial)
        selection = {"dataset": dataset, "test_env": int(env[3:]), "table1_row": row,
                     "trial_seed": int(trial) if trial.isdigit() else -1}
        save_soup(folder, detail, averaged.state_dict, runs or members, input_dirs,
                  provider.evaluators, selection)
        written.append(folder)
    return written
