"""``predict(model, images)``: class predictions of a loaded model folder.

``images`` may be image files or folders (an ``ImageFolder``-shaped folder,
``<folder>/<class name>/<image>``, also gives the true labels), PIL images, a uint8 image
batch, a batch of prepared inputs, or a torch dataset of ``(input, label)`` pairs (a split of
a registered dataset, see ``data.dataset_split``). Inputs are batched and scored as the
training run's evaluations score them (the same transform, batches of 64, ``predict``), so
the predictions are the ones an evaluation of the same weights makes.
"""

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import torch

from domainbed.errors import DomainBedError

EVAL_BATCH_SIZE = 64  # the batch size of the evaluations (scoring.evaluation)


@dataclass
class Predictions:
    """Logits of N items, in order, and what is known about them."""

    class_names: List[str]
    logits: torch.Tensor                      # (N, K) on the CPU
    items: List[str]                          # file path or item name of each row
    labels: Optional[torch.Tensor] = None     # true labels, when known
    unreadable: List[Tuple[str, str]] = field(default_factory=list)  # (file, why)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def indices(self) -> torch.Tensor:
        """The predicted class of each item (as the core's ``misc.accuracy`` reads logits:
        argmax, or logit > 0 for a single-logit head)."""
        if self.logits.size(1) == 1:
            return self.logits.gt(0).long().view(-1)
        return self.logits.argmax(1)

    @property
    def probabilities(self) -> torch.Tensor:
        """Class probabilities (softmax; sigmoid for a single-logit head)."""
        if self.logits.size(1) == 1:
            p = torch.sigmoid(self.logits)
            return torch.cat([1 - p, p], 1)
        return torch.softmax(self.logits, 1)

    def names(self) -> List[str]:
        """The predicted class name of each item."""
        return [self.class_names[i] for i in self.indices.tolist()]

    def topk(self, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(probabilities, class indices)`` of the ``k`` likeliest classes per item."""
        probs = self.probabilities
        return probs.topk(min(k, probs.size(1)), dim=1)

    @property
    def n_correct(self) -> Optional[int]:
        if self.labels is None:
            return None
        return int(self.indices.eq(self.labels).sum())

    @property
    def accuracy(self) -> Optional[float]:
        """Correct over all items with a label (None without labels or items)."""
        if self.labels is None or not len(self.labels):
            return None
        return self.n_correct / len(self.labels)


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _bar(total: int, progress: bool, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False)


@torch.no_grad()
def _run(model, batches: Iterable, total: int, progress: bool) -> Tuple[torch.Tensor, list]:
    """The logits of ``batches`` (``(inputs or None, n_items, extra)`` triples), stacked,
    and the extras in order."""
    device = _device_of(model)
    model.eval()
    logits, extras = [], []
    with _bar(total, progress, "predict") as bar:
        for x, n_items, extra in batches:
            if x is not None:
                logits.append(model.predict(x.to(device)).float().cpu())
            extras.append(extra)
            bar.update(n_items)
    if logits:
        return torch.cat(logits), extras
    return torch.zeros(0, len(model.class_names)), extras


def item_names(dataset) -> List[str]:
    """A name per item of a dataset split: its file when the data are files, else
    ``#<index in its environment>``."""
    keys = list(range(len(dataset)))
    inner = dataset
    while hasattr(inner, "underlying_dataset") and hasattr(inner, "keys"):
        keys = [inner.keys[k] for k in keys]
        inner = inner.underlying_dataset
    samples = getattr(inner, "samples", None)
    if samples is not None:
        return [samples[k][0] for k in keys]
    return [f"#{k}" for k in keys]


def predict_dataset(model, dataset, batch_size: int = EVAL_BATCH_SIZE, num_workers: int = 0,
                    progress: bool = False) -> Predictions:
    """Predictions on a torch dataset of ``(input, label)`` pairs, loaded as evaluations
    load a split (``lib.fast_data_loader.eval_loader``)."""
    from domainbed.lib.fast_data_loader import eval_loader
    loader = eval_loader(dataset, batch_size, num_workers)
    logits, labels = _run(model, ((x, len(y), y) for x, y in loader), len(dataset), progress)
    y = torch.cat([torch.as_tensor(t) for t in labels]) if labels else torch.zeros(0)
    return Predictions(list(model.class_names), logits, item_names(dataset), y.long())


def predict_files(model, files: Sequence[str], labels: Optional[Sequence[int]] = None,
                  batch_size: int = EVAL_BATCH_SIZE, num_workers: int = 0,
                  progress: bool = False) -> Predictions:
    """Predictions on image files through the model's transform; unreadable files are
    listed in ``unreadable`` (file, reason) and left out of the rows."""
    from torch.utils.data import DataLoader
    from domainbed.model_folder.images import ImageFiles, collate_files
    transform = _transform_of(model)
    steps, finish = getattr(transform, "steps", transform), getattr(transform, "finish", None)
    from domainbed.lib.fast_data_loader import cap_workers
    loader = DataLoader(ImageFiles(files, steps), batch_size=batch_size, shuffle=False,
                        num_workers=cap_workers(num_workers), collate_fn=collate_files)

    def batches():
        for images, indices, bad in loader:
            if images is not None and finish is not None:
                images = finish(images)
            yield images, len(indices) + len(bad), (indices, bad)
    logits, extras = _run(model, batches(), len(files), progress)
    kept = [i for indices, _ in extras for i in indices]
    unreadable = [(files[i], why) for _, bad in extras for i, why in bad]
    y = torch.tensor([labels[i] for i in kept], dtype=torch.long) if labels is not None \
        else None
    return Predictions(list(model.class_names), logits, [files[i] for i in kept], y,
                       unreadable)


def _transform_of(model):
    transform = getattr(model, "transform", None)
    if transform is None:
        raise DomainBedError(
            "this model's data had no image files (e.g. random tensors), so no image "
            "pipeline is recorded in its config.json; predict on its dataset instead "
            "(--dataset NAME --data_dir DIR --env K)")
    return transform


def predict(model, images: Any, batch_size: int = EVAL_BATCH_SIZE, num_workers: int = 0,
            progress: bool = False) -> Predictions:
    """Predictions of ``model`` (``load_model``'s) on ``images``: a file or folder path,
    a list of paths, a PIL image or a list of them, a uint8 ``(N, C, H, W)`` image batch,
    a float batch of prepared inputs, or a torch dataset of ``(input, label)`` pairs."""
    from torch.utils.data import Dataset
    if isinstance(images, Dataset):
        return predict_dataset(model, images, batch_size, num_workers, progress)
    if isinstance(images, (str, os.PathLike)):
        images = [os.fspath(images)]
    if isinstance(images, (list, tuple)) and images and all(
            isinstance(i, (str, os.PathLike)) for i in images):
        from domainbed.model_folder.images import collect_images
        found = collect_images([os.fspath(i) for i in images], model.class_names)
        return predict_files(model, found.files, found.labels, batch_size, num_workers,
                             progress)
    if isinstance(images, torch.Tensor):
        batch = images if images.dim() == 4 else images.unsqueeze(0)
        if batch.dtype == torch.uint8:
            transform = _transform_of(model)
            batch = torch.stack([transform(x) for x in batch])
        return _from_tensors(model, batch, batch_size, progress)
    pictures = images if isinstance(images, (list, tuple)) else [images]
    if not pictures or not all(hasattr(p, "convert") for p in pictures):
        raise DomainBedError(
            f"predict takes paths, PIL images, an image tensor or a dataset, got "
            f"{type(images).__name__}")
    transform = _transform_of(model)
    return _from_tensors(model, torch.stack([transform(p) for p in pictures]), batch_size,
                         progress)


def _from_tensors(model, batch: torch.Tensor, batch_size: int, progress: bool) -> Predictions:
    chunks = ((batch[i:i + batch_size], len(batch[i:i + batch_size]), None)
              for i in range(0, len(batch), batch_size))
    logits, _ = _run(model, chunks, len(batch), progress)
    return Predictions(list(model.class_names), logits, [f"#{i}" for i in range(len(batch))])
