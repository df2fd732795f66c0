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

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from domainbed.errors import DomainBedError
from domainbed.lib import misc
from domainbed.lib.weights import read_metadata
from domainbed_aux.merging.contract import TrainingData
from domainbed_aux.scoring.runs import RunInfo, algorithm_class

log = logging.getLogger(__name__)

SPLITS = ("test_in", "id_val", "test_full", "train_in")
EVAL_BATCH_SIZE = 64

StateDict = Dict[str, torch.Tensor]


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
        from domainbed.training.setup import make_splits
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
        model = algorithm_class(algorithm)(input_shape, n_classes, n_domains, hparams)
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


class TrainingDomainData(TrainingData):
    """Training-domain data of a run's splits for data-aware merge rules (Fisher, RegMean):
    the training envs' ``in`` splits through the un-augmented view (never the test domain,
    never a validation split), ``n_examples`` of them drawn once with a fixed seed; the
    network of a state dict is the evaluator's model."""

    SEED = 0

    def __init__(self, evaluator: RunEvaluator, batch_size: int = EVAL_BATCH_SIZE):
        self.evaluator = evaluator
        self.batch_size = batch_size

    def batches(self, n_examples: int):
        from torch.utils.data import ConcatDataset, Subset
        sets = [dataset for _, dataset, _ in self.evaluator.eval_sets("train_in")]
        pooled = ConcatDataset(sets)
        order = torch.randperm(len(pooled), generator=torch.Generator().manual_seed(self.SEED))
        chosen = Subset(pooled, order[:max(0, int(n_examples))].tolist())
        for x, y in self.evaluator._loader(chosen):
            yield x, y

    def model(self, state: Mapping[str, torch.Tensor]) -> torch.nn.Module:
        return self.evaluator.model(state)
