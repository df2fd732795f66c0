"""Image files to predict on: lists, folders and ``ImageFolder``-shaped folders, read so that
an unreadable file is reported, never silently dropped."""

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from PIL import Image
from torch.utils.data import Dataset

from domainbed.datasets.image_folder import list_images, list_subfolders, pil_loader
from domainbed.errors import DomainBedError


@dataclass
class ImageList:
    """Files to predict on; ``labels`` (indices into the model's classes) when the files
    came from an ``ImageFolder``-shaped folder (``<folder>/<class name>/<image>``)."""

    files: List[str]
    labels: Optional[List[int]] = None


def _class_folders(folder: str, class_names: Sequence[str]) -> Optional[List[str]]:
    """The class sub-folders of ``folder`` when every visible entry is a folder named after
    a class of the model (an ``ImageFolder``-shaped folder), else None."""
    entries = [e for e in os.listdir(folder) if not e.startswith(".")]
    subfolders = list_subfolders(folder)
    if not subfolders or len(subfolders) != len(entries):
        return None
    if not set(subfolders) <= set(class_names):
        return None
    return subfolders


def collect_images(paths: Sequence[str], class_names: Sequence[str]) -> ImageList:
    """The image files of ``paths`` (files, and folders searched recursively, in sorted
    order). One folder laid out as ``<class>/<image>`` with the model's class names gives
    the labels too. A path that does not exist raises ``DomainBedError``."""
    for path in paths:
        if not os.path.exists(path):
            raise DomainBedError(f"--images {path!r} does not exist; pass image files or "
                                 "folders of images")
    if len(paths) == 1 and os.path.isdir(paths[0]):
        classes = _class_folders(paths[0], class_names)
        if classes is not None:
            index = {name: i for i, name in enumerate(class_names)}
            files, labels = [], []
            for name in classes:
                found = list_images(os.path.join(paths[0], name))
                files += found
                labels += [index[name]] * len(found)
            return ImageList(files, labels)
    files: List[str] = []
    for path in paths:
        # a folder gives its image files; a file named explicitly is tried whatever its
        # extension (an unreadable one is then reported)
        files += list_images(path) if os.path.isdir(path) else [path]
    return ImageList(files)


class ImageFiles(Dataset):
    """Items ``(uint8 image or None, index, error)`` of files through ``steps`` (the model
    transform's uint8 stage): a file that cannot be read gives None and the reason."""

    def __init__(self, files: Sequence[str], steps):
        self.files = list(files)
        self.steps = steps

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tuple[Optional[torch.Tensor], int, Optional[str]]:
        try:
            image = pil_loader(self.files[index])
            return self.steps(image), index, None
        except (OSError, ValueError, SyntaxError, RuntimeError, TypeError,
                Image.DecompressionBombError) as exc:
            return None, index, " ".join(str(exc).split()) or type(exc).__name__


def collate_files(items):
    """``(stacked readable images or None, their indices, [(index, error)])``."""
    good = [(x, i) for x, i, err in items if err is None]
    bad = [(i, err) for _, i, err in items if err is not None]
    images = torch.stack([x for x, _ in good]) if good else None
    return images, [i for _, i in good], bad
