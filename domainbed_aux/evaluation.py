"""Evaluate weights on the exact splits of a finished run.

A run's dataset and in/out splits are rebuilt from the arguments it recorded (dataset,
test_envs, trial_seed, holdout fractions, class balancing), with the core's own
``make_splits``, so a score computed here uses the same examples as the run's records:

- ``"test_in"``: ``env{test}_in``, the split every selection row of the tables reports;
- ``"id_val"``: the union of the training envs' ``out`` splits (pooled: total correct over
  total examples), the in-domain validation set of greedy soups;
- ``"test_full"``: every example of the test domain;
- ``"train_in"``: the union of the training envs' ``in`` splits (batch-norm re-estimation).

Every split is read through the un-augmented evaluation view, like the run's own scores.
"""

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from domainbed.errors import DomainBedError
from domainbed.lib import misc
from domainbed.lib import run_dir as rd
from domainbed.lib.reporting import DEFAULT_MAX_DEPTH, _find_run_dirs
from domainbed.lib.weights import read_metadata

log = logging.getLogger(__name__)

SPLITS = ("test_in", "id_val", "test_full", "train_in")
EVAL_BATCH_SIZE = 64

StateDict = Dict[str, torch.Tensor]


WEIGHTS = ("best", "final")


def _keeps_best_checkpoint(algorithm: str) -> bool:
    try:
        return bool(getattr(_algorithm_class(algorithm), "BEST_CHECKPOINT", True))
    except DomainBedError:
        return True


@dataclass
class RunInfo:
    """A finished run: its directory, recorded args/hparams, records and weight files.

    ``weights`` says which weights of the run soups, ensembles, WiSE-FT and re-scored rows
    use: ``"best"`` (default) = ``model_best.safetensors``, the checkpoint with the highest
    ID-validation accuracy (the paper's appendix F.1); for algorithms whose model is an
    average over the trajectory (MA, SWAD) that is their final, averaged model;
    ``"final"`` = ``model.safetensors``, the weights after the last step.
    """

    run_dir: str
    args: Dict[str, Any]
    hparams: Dict[str, Any]
    records: List[dict]
    final_model_path: str
    init: Optional[Dict[str, Any]] = None
    weights: str = "best"

    @property
    def uses_best_checkpoint(self) -> bool:
        """Whether ``model_path`` is the best-ID-validation checkpoint (not the final one)."""
        return self.weights == "best" and _keeps_best_checkpoint(self.algorithm)

    @property
    def model_path(self) -> str:
        """The weight file of this run that ``weights`` selects (see the class docstring)."""
        if not self.uses_best_checkpoint:
            return self.final_model_path
        path = os.path.join(self.run_dir, rd.MODEL_BEST)
        if not os.path.isfile(path):
            raise DomainBedError(
                f"{self.run_dir}: no {rd.MODEL_BEST} (the best ID-validation checkpoint; runs "
                "trained before it existed, or with --skip_model_save, lack it); retrain the "
                "run, or use its final weights explicitly (--weights final)")
        return path

    @property
    def selected_record(self) -> dict:
        """The record of the weights ``model_path`` holds: the first record with the highest
        ID-validation accuracy for the best checkpoint, else the final record."""
        if not self.uses_best_checkpoint:
            return self.final_record
        best, best_acc = None, None
        for record in sorted(self.records, key=lambda r: r["step"]):
            if record.get("final_average"):
                continue
            acc = self._id_val_of(record)
            if acc is not None and (best_acc is None or acc > best_acc):
                best, best_acc = record, acc
        if best is None:
            raise DomainBedError(f"{self.run_dir}: no record has env{{j}}_out_acc for every "
                                 f"training env {self.train_envs}; re-run the training")
        return best

    @property
    def dataset(self) -> str:
        return self.args["dataset"]

    @property
    def algorithm(self) -> str:
        return self.args["algorithm"]

    @property
    def trial_seed(self) -> int:
        return self.args["trial_seed"]

    @property
    def test_envs(self) -> List[int]:
        return list(self.args.get("test_envs") or [])

    @property
    def robust(self) -> bool:
        return bool((self.init or {}).get("robust", False))

    @property
    def final_record(self) -> dict:
        # at the last step, SWAD's record of its averaged window comes after the live one
        return max(self.records, key=lambda r: (r["step"], bool(r.get("final_average"))))

    @property
    def n_envs(self) -> int:
        from domainbed.lib.reporting import record_n_envs
        return record_n_envs(self.final_record)

    @property
    def train_envs(self) -> List[int]:
        return [i for i in range(self.n_envs) if i not in self.test_envs]

    def _id_val_of(self, record: dict) -> Optional[float]:
        accs = [record.get(f"env{j}_out_acc") for j in self.train_envs]
        if not accs or any(a is None for a in accs):
            return None
        return sum(accs) / len(accs)

    @property
    def id_val_acc(self) -> float:
        """Recorded ID-validation accuracy (mean ``env{j}_out_acc`` over training envs) of
        the weights ``model_path`` holds (see ``selected_record``)."""
        acc = self._id_val_of(self.selected_record)
        if acc is None:
            raise DomainBedError(f"{self.run_dir}: the record has no env{{j}}_out_acc for "
                                 f"training envs {self.train_envs}; re-run the training")
        return acc


def _read_jsonl(path: str) -> List[dict]:
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                log.warning("%s: skipping an undecodable line", path)
    return records


def read_run(run_dir: str, weights: str = "best") -> RunInfo:
    """The ``RunInfo`` of a finished run; raises ``DomainBedError`` when it is not usable."""
    if weights not in WEIGHTS:
        raise DomainBedError(f"unknown weights {weights!r}; known: {', '.join(WEIGHTS)}")
    if not os.path.exists(os.path.join(run_dir, rd.DONE)):
        raise DomainBedError(f"{run_dir}: the run is not finished (no `{rd.DONE}` file)")
    model_path = os.path.join(run_dir, rd.MODEL)
    if not os.path.isfile(model_path):
        raise DomainBedError(f"{run_dir}: no {rd.MODEL}; soups and ensembles need the final "
                             "weights (train without --skip_model_save)")
    results = os.path.join(run_dir, rd.RESULTS)
    records = _read_jsonl(results) if os.path.isfile(results) else []
    if not records or not isinstance(records[-1].get("args"), dict):
        meta = read_metadata(model_path)
        raise DomainBedError(f"{run_dir}: no usable record in {rd.RESULTS} "
                             f"(model metadata args: {bool(meta.get('args'))}); the run's "
                             "ID-validation accuracy and splits are read from its records")
    last = records[-1]
    return RunInfo(run_dir=run_dir, args=dict(last["args"]), hparams=dict(last["hparams"]),
                   records=records, final_model_path=model_path, init=last.get("init"),
                   weights=weights)


def find_runs(input_dirs: Iterable[str], dataset: Optional[str] = None,
              test_env: Optional[int] = None, trial_seed: Optional[int] = None,
              algorithms: Optional[Sequence[str]] = None,
              max_depth: int = DEFAULT_MAX_DEPTH, weights: str = "best") -> List[RunInfo]:
    """Finished runs (with ``done`` and a model file) under ``input_dirs``, filtered;
    ``weights`` (best or final) is passed to each ``RunInfo``.

    ``test_env`` keeps runs whose ``test_envs`` is exactly ``[test_env]``; ``trial_seed``
    None or -1 keeps every trial. Runs are sorted by directory path (a deterministic order).
    """
    runs = []
    for top in input_dirs:
        if not os.path.isdir(top):
            raise DomainBedError(f"input directory {top!r} does not exist; pass the output "
                                 "folder of a sweep (comma-separate several)")
        for path, has_done in _find_run_dirs(top, max_depth):
            if not has_done or not os.path.isfile(os.path.join(path, rd.MODEL)):
                continue
            try:
                run = read_run(path, weights)
            except DomainBedError as exc:
                log.warning("skipping %s", exc)
                continue
            if dataset is not None and run.dataset != dataset:
                continue
            if test_env is not None and run.test_envs != [test_env]:
                continue
            if trial_seed is not None and trial_seed != -1 and run.trial_seed != trial_seed:
                continue
            if algorithms is not None and run.algorithm not in algorithms:
                continue
            runs.append(run)
    return sorted(runs, key=lambda r: r.run_dir)


def split_identity(run: RunInfo, data_dir: Optional[str] = None) -> Tuple:
    """What decides a run's splits: runs with equal identities share every split."""
    args = run.args
    uda = args.get("uda_holdout_fraction", 0.0) if args.get("task") == "domain_adaptation" \
        else 0.0
    return (run.dataset, tuple(run.test_envs), run.trial_seed,
            float(args.get("holdout_fraction", 0.2)), float(uda or 0.0),
            bool(run.hparams.get("class_balanced", False)),
            bool(args.get("augmented_validation", False)),
            data_dir if data_dir is not None else args.get("data_dir"))


def _algorithm_class(name: str):
    from domainbed import algorithms
    try:
        return algorithms.get_algorithm_class(name)
    except KeyError:
        pass
    import domainbed_aux.plugin  # noqa: F401  (registers the ratatouille family's algorithms)
    try:
        return algorithms.get_algorithm_class(name)
    except KeyError:
        raise DomainBedError(f"algorithm {name!r} of a model file is not registered; known: "
                             f"{', '.join(algorithms.ALGORITHMS)}; import the plugin that "
                             "defines it (DOMAINBED_PLUGINS)") from None


def _live_batch_norm(model: torch.nn.Module) -> bool:
    """True when some batch-norm layer updates its statistics in training mode."""
    was_training = model.training
    model.train()
    live = any(m.training and m.track_running_stats for m in model.modules()
               if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    model.train(was_training)
    return live


class RunEvaluator:
    """Scores state dicts of one architecture on the splits of one (dataset, trial) setting.

    Built from a run: the model is re-created from the metadata of its model file (algorithm,
    input shape, classes, domains, hparams) without loading pretrained weights; the splits
    from its recorded args. ``data_dir`` overrides the recorded ``--data_dir``.
    """

    def __init__(self, run: RunInfo, data_dir: Optional[str] = None, device=None,
                 data: Optional[Tuple[Any, Any]] = None):
        from domainbed import datasets
        from domainbed.training.splits import make_splits
        self.run = run
        self.identity = split_identity(run, data_dir)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        meta = read_metadata(run.final_model_path)
        self._meta = meta
        self.model_algorithm = (meta.get("args") or {}).get("algorithm") or run.algorithm
        args = run.args
        root = data_dir if data_dir is not None else args.get("data_dir")
        if data is not None:  # (dataset, splits) of another evaluator with this identity
            self.dataset, self.splits = data
        else:
            try:
                dataset_class = datasets.get_dataset_class(run.dataset)
            except KeyError as exc:
                raise DomainBedError(f"{exc.args[0]} (dataset of {run.run_dir})") from None
            self.dataset = dataset_class(root, run.test_envs, run.hparams)
            self.splits = make_splits(self.dataset, run.test_envs, run.trial_seed,
                                      self.identity[3], self.identity[4], self.identity[5],
                                      self.identity[6])
        self.test_envs = run.test_envs
        self.train_envs = [i for i in range(len(self.dataset)) if i not in self.test_envs]
        self._model: Optional[torch.nn.Module] = None

    # -- the model -----------------------------------------------------------------------
    def new_model(self) -> torch.nn.Module:
        meta = self._meta
        algorithm = self.model_algorithm
        hparams = dict(meta.get("model_hparams") or self.run.hparams)
        hparams["pretrained"] = False  # the weights come from the state dict
        input_shape = meta.get("model_input_shape") or list(self.dataset.input_shape)
        n_classes = meta.get("model_num_classes") or self.dataset.num_classes
        n_domains = meta.get("model_num_domains") or len(self.train_envs)
        model = _algorithm_class(algorithm)(input_shape, n_classes, n_domains, hparams)
        return model.to(self.device)

    def model(self, state_dict: Mapping[str, torch.Tensor]) -> torch.nn.Module:
        """The (reused) model with ``state_dict`` loaded, in eval mode."""
        if self._model is None:
            self._model = self.new_model()
        try:
            self._model.load_state_dict(state_dict)
        except RuntimeError as exc:
            lines = [l.strip() for l in str(exc).strip().splitlines()[1:] if l.strip()]
            first = " ".join(lines)[:400] if lines else str(exc).strip()
            raise DomainBedError(f"weights do not fit the model of {self.run.run_dir} "
                                 f"({self._model.__class__.__name__}): {first}") from None
        return self._model.eval()

    def model_if_built(self) -> Optional[torch.nn.Module]:
        return self._model

    @property
    def live_bn(self) -> bool:
        if self._model is None:
            self._model = self.new_model()
        return _live_batch_norm(self._model)

    # -- the data ------------------------------------------------------------------------
    def eval_sets(self, split: str) -> List[Tuple[str, Any, Optional[torch.Tensor]]]:
        """``[(name, dataset, weights)]`` of a split (see the module docstring)."""
        s = self.splits
        if split == "test_in":
            return [(f"env{t}_in", s.eval_in[t], s.in_splits[t][1]) for t in self.test_envs]
        if split == "id_val":
            return [(f"env{j}_out", s.eval_out[j], s.out_splits[j][1]) for j in self.train_envs]
        if split == "train_in":
            return [(f"env{j}_in", s.eval_in[j], s.in_splits[j][1]) for j in self.train_envs]
        if split == "test_full":
            sets = []
            for t in self.test_envs:
                view = self.dataset.eval_view(t)
                weights = (misc.make_weights_for_balanced_classes(view)
                           if self.identity[5] else None)
                sets.append((f"env{t}", view, weights))
            return sets
        raise DomainBedError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")

    def _loader(self, dataset):
        from domainbed.lib.fast_data_loader import eval_loader
        return eval_loader(dataset, EVAL_BATCH_SIZE, 0)

    # -- scores --------------------------------------------------------------------------
    def accuracy(self, state_dict: Mapping[str, torch.Tensor], split: str) -> float:
        """Pooled accuracy of ``state_dict`` on ``split``: total (weighted) correct over total.

        Each set is scored with the core's ``misc.accuracy``, so a single set reproduces the
        run's recorded ``env{i}_{in,out}_acc``.
        """
        model = self.model(state_dict)
        correct, total = 0.0, 0.0
        for _, dataset, weights in self.eval_sets(split):
            n = float(weights.sum()) if weights is not None else float(len(dataset))
            if n == 0:
                continue
            with torch.no_grad():
                acc = misc.accuracy(model, self._loader(dataset), weights, self.device)
            correct += acc * n
            total += n
        if total == 0:
            raise DomainBedError(f"split {split!r} of {self.run.run_dir} has no example")
        return correct / total

    def probabilities(self, state_dict: Mapping[str, torch.Tensor],
                      split: str) -> List[torch.Tensor]:
        """Per set of ``split``, the softmax probabilities ``[n_examples, n_classes]``."""
        model = self.model(state_dict)
        out = []
        with torch.no_grad():
            for _, dataset, _ in self.eval_sets(split):
                probs = []
                for x, _ in self._loader(dataset):
                    logits = model.predict(x.to(self.device))
                    if logits.size(1) == 1:  # one logit: binary, as misc.accuracy reads it
                        p1 = torch.sigmoid(logits)
                        probs.append(torch.cat([1 - p1, p1], 1).cpu())
                    else:
                        probs.append(torch.softmax(logits, 1).cpu())
                out.append(torch.cat(probs) if probs else torch.zeros(0, 0))
        return out

    def labels_and_weights(self, split: str) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Per set of ``split``, its labels and example weights (ones when unweighted)."""
        result = []
        for _, dataset, weights in self.eval_sets(split):
            labels = torch.cat([y for _, y in self._loader(dataset)]) if len(dataset) else \
                torch.zeros(0, dtype=torch.long)
            w = weights.float() if weights is not None else torch.ones(len(labels))
            result.append((labels, w))
        return result

    # -- batch norm ----------------------------------------------------------------------
    def recompute_bn(self, state_dict: Mapping[str, torch.Tensor]) -> StateDict:
        """``state_dict`` with batch-norm running statistics re-estimated on ``train_in``.

        Statistics are reset and accumulated as a cumulative average (momentum None) over one
        pass of the training envs' in splits, the rest of the network in eval mode.
        """
        model = self.model(state_dict)
        bns = [m for m in model.modules()
               if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        model.eval()
        saved = [(m, m.momentum) for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        with torch.no_grad():
            for _, dataset, _ in self.eval_sets("train_in"):
                for x, _ in self._loader(dataset):
                    model.predict(x.to(self.device))
        for m, momentum in saved:
            m.momentum = momentum
        model.eval()
        new_state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
        return {k: new_state[k] for k in state_dict}


@dataclass
class EvaluatorCache:
    """One ``RunEvaluator`` per (split identity, model); datasets are built once."""

    data_dir: Optional[str] = None
    device: Any = None
    _evaluators: Dict[Tuple, RunEvaluator] = field(default_factory=dict)
    _data: Dict[Tuple, Tuple[Any, Any]] = field(default_factory=dict)

    def __call__(self, run: RunInfo) -> RunEvaluator:
        identity = split_identity(run, self.data_dir)
        meta = read_metadata(run.final_model_path)
        algorithm = (meta.get("args") or {}).get("algorithm") or run.algorithm
        key = identity + (algorithm, meta.get("model_num_classes"),
                          tuple(meta.get("model_input_shape") or ()))
        if key not in self._evaluators:
            evaluator = RunEvaluator(run, self.data_dir, self.device, self._data.get(identity))
            self._data[identity] = (evaluator.dataset, evaluator.splits)
            self._evaluators[key] = evaluator
        return self._evaluators[key]
