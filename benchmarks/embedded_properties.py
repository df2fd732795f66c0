"""Measure three properties of the embedded offline benchmark and print them.

    python benchmarks/embedded_properties.py [--datasets D ...] [--test_envs T ...]
        [--steps N] [--pretrain_steps N] [--work_dir DIR] [--seed S] [--output FILE.json]

All runs are ordinary run directories of the core training loop (``domainbed.training.run``):

1. the *foundation featurizer*: ERM on ``EmbeddedPretrain``, every domain trains
   (``--test_envs -1``), ``--pretrain_steps`` steps (default its ``N_STEPS`` = 1001);
2. per target dataset and test domain: ERM fine-tuned from the foundation featurizer
   (``--init_from <foundation>/model.safetensors --init_part featurizer``) and ERM from
   scratch (the same command without ``--init_from``), both for ``--steps`` steps;
3. per target dataset (its first test domain): two auxiliary featurizers (ERM on two OTHER
   embedded datasets, every domain trains, each started from a linear probe of the
   foundation featurizer on its own dataset, as the recipe's auxiliary runs), the shared
   linear probe of the foundation featurizer on the target
   (``domainbed_aux.init.probe``), and two ``Ratatouille`` runs on the target that start
   from ``(linear probe, auxiliary featurizer)`` -- one per auxiliary featurizer -- with
   hyperparameters drawn from the paper's mild space (``--hparams_space mild``, hparams
   seeds 1 and 2: two different draws, as two runs of a sweep) and the paper's share of
   frozen-featurizer steps (``lp_steps`` = 200 / 5001 of the run).

Printed figures (nothing here decides a winner; the numbers are what they are):

(i) domain shift: ID validation accuracy (mean of the training domains' ``env{j}_out_acc``
    at the last step) minus test-domain accuracy (``env{test}_in_acc`` at the last step),
    for the fine-tuned and the from-scratch runs;
(ii) transfer: fine-tuned minus from-scratch, on test-domain accuracy and on ID validation;
(iii) linear mode connectivity: accuracy on ``env{test}_in`` of the midpoint
    ``0.5 * (a + b)`` of the two Ratatouille runs' best-ID-validation checkpoints (the
    weights a soup averages), against the mean of the endpoints.

Runs live under ``--work_dir`` (default: a temporary folder, deleted at the end); a run
directory holding ``done`` is reused, an unfinished one resumes. Every run directory name
holds the settings that change its result (steps, seed, hparams overrides), so one work dir
can hold several settings.
"""

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

log = logging.getLogger("benchmarks.embedded_properties")

ACCURACY_SPLITS = ("test_in", "id_val")
N_AUX = 2  # auxiliary featurizers per target for the connectivity test
PAPER_LP_SHARE = 200 / 5001  # the paper's frozen-featurizer steps over its run length
LMC_SPACE = "mild"  # the connectivity runs draw from the paper's mild space


@dataclass
class Settings:
    """What to measure and where the runs live."""

    work_dir: str
    datasets: List[str]
    test_envs: Optional[List[int]] = None  # None: every domain of each dataset
    steps: Optional[int] = None  # None: each dataset's N_STEPS
    pretrain_steps: Optional[int] = None  # None: EmbeddedPretrain.N_STEPS
    seed: int = 0
    data_dir: Optional[str] = None  # None: <work_dir>/data
    hparams: Dict[str, Any] = field(default_factory=dict)  # overrides for every run
    lp_steps: Optional[int] = None  # None: the Ratatouille default
    lmc: bool = True
    shift: bool = True  # (i) and (ii); False measures (iii) only
    lmc_datasets: Optional[List[str]] = None  # targets of (iii); None: ``datasets``
    space: str = "upstream"  # hparams space of the (i)/(ii) runs (the lmc runs: always mild)
    checkpoint_freq: Optional[int] = None  # None: each dataset's CHECKPOINT_FREQ
    pretrain_hparams: Dict[str, Any] = field(default_factory=dict)  # overrides, foundation
    pretrain_checkpoint_freq: Optional[int] = None
    probe_steps: Optional[int] = None  # None: the run's steps
    probe_checkpoint_freq: Optional[int] = None

    @property
    def data_root(self) -> str:
        return self.data_dir or os.path.join(self.work_dir, "data")

    def tag(self, steps: int, extra: Optional[Dict[str, Any]] = None) -> str:
        """The part of a run directory name that holds the settings of the run."""
        overrides = dict(self.hparams)
        overrides.update(extra or {})
        if self.space != "upstream":
            overrides["space"] = self.space
        if self.checkpoint_freq:
            overrides["freq"] = self.checkpoint_freq
        tag = f"steps{steps}_seed{self.seed}"
        if overrides:
            digest = hashlib.sha256(json.dumps(overrides, sort_keys=True).encode())
            tag += "_hp" + digest.hexdigest()[:8]
        return tag


# ------------------------------------------------------------------------------ runs

def dataset_class(name: str):
    from domainbed import datasets
    from domainbed.errors import DomainBedError
    try:
        return datasets.get_dataset_class(name)
    except KeyError as exc:
        raise DomainBedError(f"{exc.args[0]} (--datasets)") from None


def steps_of(settings: Settings, dataset: str) -> int:
    return settings.steps if settings.steps is not None else dataset_class(dataset).N_STEPS


def test_envs_of(settings: Settings, dataset: str) -> List[int]:
    from domainbed.errors import DomainBedError
    n_envs = len(dataset_class(dataset).ENVIRONMENTS)
    if settings.test_envs is None:
        return list(range(n_envs))
    bad = [t for t in settings.test_envs if not 0 <= t < n_envs]
    if bad:
        raise DomainBedError(f"--test_envs {bad}: {dataset} has environments 0..{n_envs - 1}")
    return list(settings.test_envs)


def train_run(settings: Settings, out_dir: str, dataset: str, algorithm: str,
              test_envs: Sequence[int], steps: int, init_from: Optional[str] = None,
              init_part: str = "all", extra_hparams: Optional[Dict[str, Any]] = None,
              hparams_seed: int = 0, hparams_space: Optional[str] = None,
              hparams: Optional[Dict[str, Any]] = None,
              checkpoint_freq: Optional[int] = None):
    """Train (or reuse, or resume) one run directory; returns its ``RunInfo``."""
    from domainbed.training.config import TrainConfig
    from domainbed_aux.scoring.runs import read_run
    hparams = dict(settings.hparams if hparams is None else hparams)
    hparams.update(extra_hparams or {})
    config = TrainConfig(
        dataset=dataset, algorithm=algorithm, steps=int(steps), seed=int(settings.seed),
        trial_seed=int(settings.seed), test_envs=[int(t) for t in test_envs],
        data_dir=str(settings.data_root), output_dir=str(out_dir),
        hparams_seed=int(hparams_seed), hparams_space=hparams_space or settings.space,
        hparams=json.dumps(hparams, sort_keys=True) if hparams else None,
        checkpoint_freq=checkpoint_freq or settings.checkpoint_freq,
        init_from=init_from or None, init_part=init_part if init_from else "all")
    if os.path.exists(os.path.join(out_dir, "done")):
        log.info("reusing %s", out_dir)
    else:
        start = time.perf_counter()
        log.info("training %s %s test_envs=%s steps=%d -> %s", algorithm, dataset,
                 list(test_envs), steps, out_dir)
        _train_or_wait(config, out_dir)
        log.info("  done in %.0f s", time.perf_counter() - start)
    return read_run(out_dir)


def _train_or_wait(args, out_dir: str, poll_seconds: float = 5.0) -> None:
    """Train; when another process trains the same run directory, wait until it is done."""
    from domainbed.lib import run_dir as rd
    from domainbed.training.run import RunLocked, train
    while True:
        try:
            train(args)
            return
        except RunLocked:
            log.info("  another process trains %s; waiting", out_dir)
            while rd.is_running(out_dir):
                time.sleep(poll_seconds)


def run_scores(run) -> Dict[str, float]:
    """``{"test": env{test}_in_acc, "id_val": mean training env{j}_out_acc}``, last step."""
    record = run.final_record
    test = [record[f"env{t}_in_acc"] for t in run.test_envs]
    return {"test": sum(test) / len(test), "id_val": run.id_val_acc}


def foundation_featurizer(settings: Settings) -> str:
    """The model file of the foundation run (ERM on EmbeddedPretrain, every domain)."""
    from domainbed.datasets.embedded import EMBEDDED_PRETRAIN
    steps = (settings.pretrain_steps if settings.pretrain_steps is not None
             else dataset_class(EMBEDDED_PRETRAIN).N_STEPS)
    tag = settings.tag(steps, {"pretrain": settings.pretrain_hparams,
                               "freq": settings.pretrain_checkpoint_freq}
                       if settings.pretrain_hparams or settings.pretrain_checkpoint_freq else None)
    out = os.path.join(settings.work_dir, "foundation", tag)
    run = train_run(settings, out, EMBEDDED_PRETRAIN, "ERM", [-1], steps,
                    hparams=settings.pretrain_hparams, hparams_space="upstream",
                    checkpoint_freq=settings.pretrain_checkpoint_freq)
    return run.final_model_path  # phi_pt: the last weights, as the recipe's pretrain stage


# ------------------------------------------------------------- (i) shift, (ii) transfer

def measure_finetune_vs_scratch(settings: Settings, foundation: str) -> List[Dict[str, Any]]:
    """Per (dataset, test env): the scores of the fine-tuned and the from-scratch run."""
    rows = []
    for dataset in settings.datasets:
        steps = steps_of(settings, dataset)
        envs = dataset_class(dataset).ENVIRONMENTS
        for t in test_envs_of(settings, dataset):
            name = f"{dataset}_test{t}_{settings.tag(steps)}"
            ft = train_run(settings, os.path.join(settings.work_dir, "finetune", name),
                           dataset, "ERM", [t], steps, foundation, "featurizer")
            sc = train_run(settings, os.path.join(settings.work_dir, "scratch", name),
                           dataset, "ERM", [t], steps)
            rows.append({"dataset": dataset, "test_env": t, "test_domain": envs[t],
                         "steps": steps, "finetune": run_scores(ft),
                         "scratch": run_scores(sc)})
    return rows


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def summarise_shift(rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """(i): ID val - test (percentage points), per row, per dataset (mean) and overall."""
    out: Dict[str, Any] = {}
    for init in ("finetune", "scratch"):
        per_row = [{"dataset": r["dataset"], "test_env": r["test_env"],
                    "id_val": 100 * r[init]["id_val"], "test": 100 * r[init]["test"],
                    "gap": 100 * (r[init]["id_val"] - r[init]["test"])} for r in rows]
        per_dataset = {}
        for dataset in dict.fromkeys(r["dataset"] for r in rows):
            mine = [r for r in per_row if r["dataset"] == dataset]
            per_dataset[dataset] = {k: _mean([r[k] for r in mine])
                                    for k in ("id_val", "test", "gap")}
        out[init] = {"per_run": per_row, "per_dataset": per_dataset,
                     "average": {k: _mean([d[k] for d in per_dataset.values()])
                                 for k in ("id_val", "test", "gap")}}
    return out


def summarise_transfer(rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """(ii): fine-tuned - from scratch (points) on test and ID val, per dataset and mean."""
    per_dataset = {}
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        entry = {}
        for score in ("test", "id_val"):
            ft = _mean([100 * r["finetune"][score] for r in mine])
            sc = _mean([100 * r["scratch"][score] for r in mine])
            entry[score] = {"finetune": ft, "scratch": sc, "gain": ft - sc}
        per_dataset[dataset] = entry
    average = {score: {k: _mean([d[score][k] for d in per_dataset.values()])
                       for k in ("finetune", "scratch", "gain")}
               for score in ("test", "id_val")}
    return {"per_dataset": per_dataset, "average": average}


# ------------------------------------------------------------- (iii) connectivity

def aux_datasets_for(target: str, selected: Sequence[str]) -> List[str]:
    """The two auxiliary datasets of ``target``: the next selected datasets in cyclic
    order, then the rest of the family (so that selected datasets share aux runs)."""
    from domainbed.datasets.embedded import EMBEDDED_TARGET_FAMILY
    from domainbed.errors import DomainBedError
    order = list(selected)
    if target in order:
        i = order.index(target)
        candidates = order[i + 1:] + order[:i]
    else:
        candidates = list(order)
    candidates += [d for d in EMBEDDED_TARGET_FAMILY if d not in order]
    if len(candidates) < N_AUX:
        raise DomainBedError(f"{target}: needs {N_AUX} other embedded datasets for the "
                             f"auxiliary featurizers, found {candidates}")
    return candidates[:N_AUX]


def compose_init(path: str, aux_model: str, probe_path: str, aux_dataset: str,
                 aux_index: int) -> str:
    """Write ``featurizer.*`` of the aux run + ``classifier.*`` of the probe to ``path``.

    The metadata names an auxiliary member, so Ratatouille trains only the classifier
    for its first ``lp_steps`` updates, as in the recipe.
    """
    from domainbed.lib.weights import extract_state_dict, load_file
    from domainbed_aux.init.probe import read_linear_probe
    from domainbed_aux.init.record import InitRecord, save_init_file
    from domainbed.lib.digests import sha256_file
    from domainbed_aux.pool.members import featurizer_state_dict
    if os.path.exists(path):
        return path
    content, _ = load_file(aux_model, device="cpu")
    featurizer = featurizer_state_dict(extract_state_dict(content), source=aux_model)
    _, classifier, _ = read_linear_probe(probe_path)
    probe_key = os.path.basename(probe_path)[:-len(".safetensors")]
    member = {"index": aux_index, "kind": "aux", "dataset": aux_dataset,
              "run": os.path.dirname(aux_model), "sha256": sha256_file(aux_model)}
    return save_init_file(path, featurizer, classifier,
                          InitRecord(member, probe_key, sha256_file(probe_path)))


def midpoint_scores(run_a, run_b, data_dir: str) -> Dict[str, Dict[str, float]]:
    """Per split: accuracy of ``0.5 (a + b)`` vs the mean of the endpoints (in points)."""
    from domainbed_aux.analysis import lmc
    from domainbed_aux.analysis.sources import compose, load_parts
    from domainbed_aux.scoring.evaluation import RunEvaluator
    evaluator = RunEvaluator(run_a, data_dir)
    template = evaluator.new_model().state_dict()
    names = ["featurizer", "classifier"]
    a, b = (lmc.flatten_parts(load_parts(r.model_path), names) for r in (run_a, run_b))
    out = {}
    for split in ACCURACY_SPLITS:
        def evaluate(flat, split=split):
            return evaluator.accuracy(compose(template, lmc.unflatten_parts(flat)), split)
        result = lmc.curve(evaluate, a, b, [0.0, 0.5, 1.0])
        out[split] = {"endpoint_a": 100 * result["accuracies"][0],
                      "endpoint_b": 100 * result["accuracies"][2],
                      "midpoint": 100 * result["midpoint_acc"],
                      "endpoints_mean": 100 * result["endpoints_mean_acc"],
                      "difference": 100 * result["midpoint_gain"]}
    return out


def measure_connectivity(settings: Settings, foundation: str) -> Dict[str, Any]:
    """(iii) per target dataset (its first test env) and the mean over targets."""
    from domainbed_aux.init.probe import LinearProbeSpec, ensure_linear_probe
    per_target = {}
    probes_dir = os.path.join(settings.work_dir, "linear_probes")
    targets = settings.lmc_datasets if settings.lmc_datasets is not None else settings.datasets
    for target in targets:
        t = test_envs_of(settings, target)[0]
        steps = steps_of(settings, target)
        lp_steps = settings.lp_steps if settings.lp_steps is not None else \
            round(PAPER_LP_SHARE * steps)
        runs = []
        aux_names = aux_datasets_for(target, settings.datasets)
        spec = LinearProbeSpec(dataset=target, test_envs=[t], trial_seed=settings.seed,
                               data_dir=settings.data_root, hparams=dict(settings.hparams),
                               steps=settings.probe_steps or steps,
                               checkpoint_freq=settings.probe_checkpoint_freq,
                               pretrained_featurizer=foundation, hparams_space=LMC_SPACE)
        probe = ensure_linear_probe(spec, probes_dir)
        for index, aux in enumerate(aux_names, start=1):
            aux_steps = steps_of(settings, aux)
            aux_probe = ensure_linear_probe(LinearProbeSpec(
                dataset=aux, test_envs=[-1], trial_seed=settings.seed,
                data_dir=settings.data_root, hparams=dict(settings.hparams),
                steps=settings.probe_steps or aux_steps,
                checkpoint_freq=settings.probe_checkpoint_freq,
                pretrained_featurizer=foundation, hparams_space=LMC_SPACE), probes_dir)
            aux_run = train_run(settings, os.path.join(
                settings.work_dir, "aux", f"{aux}_{settings.tag(aux_steps, {'probe': 1})}"),
                aux, "ERM", [-1], aux_steps, aux_probe.path, "all")
            # the pool member is the auxiliary run's featurizer at its last step
            extra = {"lp_steps": lp_steps}
            tag = settings.tag(steps, dict(extra, hparams_seed=index, space=LMC_SPACE))
            name = f"{target}_test{t}_from_{aux}_{tag}"
            init = compose_init(os.path.join(settings.work_dir, "lmc", "inits",
                                             name + ".safetensors"),
                                aux_run.final_model_path, probe.path, aux, index)
            runs.append(train_run(settings, os.path.join(settings.work_dir, "lmc", name),
                                  target, "Ratatouille", [t], steps, init, "all", extra,
                                  hparams_seed=index, hparams_space=LMC_SPACE))
        log.info("scoring the midpoint of %s and %s", runs[0].run_dir, runs[1].run_dir)
        entry = midpoint_scores(runs[0], runs[1], settings.data_root)
        entry.update({"test_env": t, "test_domain": dataset_class(target).ENVIRONMENTS[t],
                      "aux_datasets": aux_names})
        per_target[target] = entry
    average = {split: {k: _mean([e[split][k] for e in per_target.values()])
                       for k in ("midpoint", "endpoints_mean", "difference")}
               for split in ACCURACY_SPLITS}
    return {"per_target": per_target, "average": average}


# ------------------------------------------------------------------------------ all

def measure_properties(settings: Settings) -> Dict[str, Any]:
    """Train (or reuse) every run and return the three properties' figures."""
    start = time.perf_counter()
    foundation = foundation_featurizer(settings)
    result: Dict[str, Any] = {
        "settings": {k: v for k, v in asdict(settings).items() if k != "work_dir"}}
    if settings.shift:
        rows = measure_finetune_vs_scratch(settings, foundation)
        result.update({"runs": rows, "domain_shift": summarise_shift(rows),
                       "transfer": summarise_transfer(rows)})
    if settings.lmc:
        result["connectivity"] = measure_connectivity(settings, foundation)
    result["wall_seconds"] = time.perf_counter() - start
    return result


def format_report(result: Dict[str, Any]) -> str:
    """The three tables as text (accuracies in %, differences in points)."""
    lines = []
    if "domain_shift" in result:
        lines += _format_shift_and_transfer(result)
    if "connectivity" in result:
        lines += _format_connectivity(result["connectivity"])
    return "\n".join(lines)


def _format_shift_and_transfer(result: Dict[str, Any]) -> List[str]:
    lines = []
    shift = result["domain_shift"]
    lines.append("(i) domain shift: ID validation - test domain (points), last step")
    lines.append(f"{'dataset':<18}{'init':<10}{'ID val':>8}{'test':>8}{'gap':>8}   per test env")
    for init in ("finetune", "scratch"):
        for dataset, d in shift[init]["per_dataset"].items():
            per_env = ", ".join(f"{r['test_env']}:{r['gap']:.1f}"
                                for r in shift[init]["per_run"] if r["dataset"] == dataset)
            lines.append(f"{dataset:<18}{init:<10}{d['id_val']:8.1f}{d['test']:8.1f}"
                         f"{d['gap']:8.1f}   {per_env}")
        a = shift[init]["average"]
        lines.append(f"{'average':<18}{init:<10}{a['id_val']:8.1f}{a['test']:8.1f}{a['gap']:8.1f}")
    transfer = result["transfer"]
    lines.append("")
    lines.append("(ii) transfer: fine-tuned from the foundation featurizer vs from scratch")
    lines.append(f"{'dataset':<18}{'test: ft':>9}{'scratch':>9}{'gain':>8}"
                 f"{'ID: ft':>9}{'scratch':>9}{'gain':>8}")
    rows = list(transfer["per_dataset"].items()) + [("average", transfer["average"])]
    for dataset, d in rows:
        t, v = d["test"], d["id_val"]
        lines.append(f"{dataset:<18}{t['finetune']:9.1f}{t['scratch']:9.1f}{t['gain']:8.1f}"
                     f"{v['finetune']:9.1f}{v['scratch']:9.1f}{v['gain']:8.1f}")
    return lines


def _format_connectivity(conn: Dict[str, Any]) -> List[str]:
    lines = []
    lines.append("")
    lines.append("(iii) linear mode connectivity: midpoint of two runs from different "
                 "auxiliary featurizers")
    lines.append(f"{'target (test env)':<22}{'aux featurizers':<32}{'a':>7}{'b':>7}"
                 f"{'mid':>7}{'mean':>7}{'diff':>7}{'ID diff':>9}")
    for target, e in conn["per_target"].items():
        s, v = e["test_in"], e["id_val"]
        lines.append(f"{target + ' (' + str(e['test_env']) + ')':<22}"
                     f"{'+'.join(e['aux_datasets']):<32}{s['endpoint_a']:7.1f}"
                     f"{s['endpoint_b']:7.1f}{s['midpoint']:7.1f}{s['endpoints_mean']:7.1f}"
                     f"{s['difference']:7.1f}{v['difference']:9.1f}")
    s, v = conn["average"]["test_in"], conn["average"]["id_val"]
    lines.append(f"{'average':<22}{'':<32}{'':>7}{'':>7}{s['midpoint']:7.1f}"
                 f"{s['endpoints_mean']:7.1f}{s['difference']:7.1f}{v['difference']:9.1f}")
    return lines


def apply_recipe(settings: Settings, path: str, explicit: argparse.Namespace) -> None:
    """Take a recipe file's settings (those the command line did not give explicitly)."""
    from domainbed_aux.recipe.schema import dataset_value
    from domainbed_aux.recipe.spec import load_recipe
    recipe = load_recipe(path)
    first = recipe["datasets"][0]
    pretrain = recipe.get("pretrain") or {}
    if explicit.pretrain_steps is None and pretrain.get("steps") is not None:
        settings.pretrain_steps = int(pretrain["steps"])
    settings.pretrain_hparams = dict(pretrain.get("hparams") or {})
    freq = dataset_value(recipe.get("checkpoint_freq"), pretrain.get("dataset", ""))
    settings.pretrain_checkpoint_freq = int(freq) if freq else None
    if explicit.steps is None and dataset_value(recipe.get("steps"), first) is not None:
        settings.steps = int(dataset_value(recipe["steps"], first))
    freq = dataset_value(recipe.get("checkpoint_freq"), first)
    settings.checkpoint_freq = int(freq) if freq else None
    if explicit.hparams is None:
        settings.hparams = dict(recipe.get("hparams") or {})
    if explicit.lp_steps is None and "lp_steps" in settings.hparams:
        settings.lp_steps = int(settings.hparams["lp_steps"])
    settings.space = recipe.get("hparams_space") or "upstream"
    probe = recipe.get("linear_probe") or {}
    settings.probe_steps = probe.get("steps")
    settings.probe_checkpoint_freq = probe.get("checkpoint_freq")


def parse_args(argv=None) -> argparse.Namespace:
    from domainbed.datasets.embedded import EMBEDDED_TARGET_FAMILY
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(EMBEDDED_TARGET_FAMILY))
    p.add_argument("--test_envs", type=int, nargs="+", default=None,
                   help="test domains of every dataset (default: each of its domains)")
    p.add_argument("--steps", type=int, default=None,
                   help="steps of the target and aux runs (default: the dataset's N_STEPS)")
    p.add_argument("--pretrain_steps", type=int, default=None,
                   help="steps of the foundation run (default: EmbeddedPretrain.N_STEPS)")
    p.add_argument("--work_dir", default=None,
                   help="keep the runs here and reuse finished ones (default: a temp dir)")
    p.add_argument("--data_dir", default=None, help="dataset cache root "
                   "(default: <work_dir>/data)")
    p.add_argument("--seed", type=int, default=0, help="--seed and --trial_seed of every run")
    p.add_argument("--hparams", default=None, help="JSON overrides for every run")
    p.add_argument("--lp_steps", type=int, default=None,
                   help="frozen-featurizer updates of the connectivity runs (default: the "
                        "paper's share, round(200 / 5001 * steps))")
    p.add_argument("--lmc_datasets", nargs="+", default=None,
                   help="targets of (iii) (default: --datasets)")
    p.add_argument("--no_lmc", action="store_true", help="skip (iii)")
    p.add_argument("--no_shift", action="store_true", help="skip (i) and (ii)")
    p.add_argument("--recipe", default=None, metavar="FILE",
                   help="take the settings of a recipe file (e.g. sweeps/embedded.json): its "
                        "pretraining steps and hparams, its steps, evaluation frequency, "
                        "hparams overrides and space, its probes' budget, so that the "
                        "figures describe that recipe's runs; flags given explicitly win")
    p.add_argument("--output", default=None, help="write the figures to this JSON file")
    p.add_argument("--verbose", action="store_true", help="show the training loop's log")
    return p.parse_args(argv)


def main(argv=None) -> int:
    from domainbed.errors import DomainBedError
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if not args.verbose:
        logging.getLogger("domainbed").setLevel(logging.WARNING)
        logging.getLogger("domainbed_aux").setLevel(logging.WARNING)
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="embedded_properties_")
    try:
        hparams = json.loads(args.hparams) if args.hparams else {}
        settings = Settings(work_dir=os.path.abspath(work_dir), datasets=args.datasets,
                            test_envs=args.test_envs, steps=args.steps,
                            pretrain_steps=args.pretrain_steps, seed=args.seed,
                            data_dir=args.data_dir, hparams=hparams, lp_steps=args.lp_steps,
                            lmc=not args.no_lmc, lmc_datasets=args.lmc_datasets,
                            shift=not args.no_shift)
        if args.recipe:
            apply_recipe(settings, args.recipe, explicit=args)
        # one math thread, as every run of the recipe: the same foundation, bit for bit
        import torch
        torch.set_num_threads(1)
        for dataset in settings.datasets + (settings.lmc_datasets or []):
            dataset_class(dataset)
        result = measure_properties(settings)
    except (DomainBedError, ValueError) as exc:
        print(f"error: {str(exc).strip().splitlines()[-1]}", file=sys.stderr)
        return 2
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    print(format_report(result))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2, sort_keys=True)
        log.info("figures written to %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
