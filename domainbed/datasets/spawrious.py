"""Spawrious (one-to-one and many-to-many spurious correlations), six dataset classes.

Images of four dog breeds on six backgrounds, ``<spawrious224>/<0|1>/<location>/<breed>/``.
Environment 0 (``Test``) is always the test combination, 1 and 2 the two spuriously
correlated training groups, built as upstream does (counts of 3168 images per breed and
group; O2O groups mix in a "filler" location). Facts: UPSTREAM_API.md B.3. Departure: files
are taken in sorted order (upstream takes ``os.listdir`` order, which depends on the
filesystem), so the selected images are the same on every machine.
"""

import os
from typing import Dict, List, Sequence, Tuple

from domainbed.datasets import transforms as T
from domainbed.datasets.base import MultipleDomainDataset, register_dataset
from domainbed.datasets.image_folder import ImageEnvironment
from domainbed.errors import DataError

SPAWRIOUS_DIR = "spawrious224"
CLASSES = ["bulldog", "corgi", "dachshund", "labrador"]  # label = index here
BREEDS = ["bulldog", "dachshund", "labrador", "corgi"]  # order of groups and concatenation
EXTENSIONS = (".png", ".jpg", ".jpeg")
DOWNLOAD = "python -m domainbed.scripts.download --data_dir {root} --datasets Spawrious"

Part = List[Tuple[str, str, int]]  # (folder "0"/"1", location, limit or -1) per breed


def spawrious_dir(root) -> str:
    """``<root>/spawrious224``, or ``root`` itself when it holds ``0/`` (upstream's layout)."""
    if root is None:
        raise DataError("Spawrious reads images from disk: pass --data_dir")
    for path in (os.path.join(root, SPAWRIOUS_DIR), root):
        if os.path.isdir(os.path.join(path, "0")):
            return path
    raise DataError(f"Spawrious: no {SPAWRIOUS_DIR}/0/ folder in {root!r}; download it with "
                    f"`{DOWNLOAD.format(root=root)}`")


def list_breed_images(folder: str, limit: int = -1) -> List[str]:
    """Sorted image paths of ``folder``, the first ``limit`` of them when ``limit >= 0``."""
    if not os.path.isdir(folder):
        raise DataError(f"Spawrious: folder {folder!r} is missing; download the dataset again "
                        "(python -m domainbed.scripts.download --datasets Spawrious)")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(EXTENSIONS))
    paths = [os.path.join(folder, n) for n in names]
    return paths if limit < 0 else paths[:limit]


class SpawriousBenchmark(MultipleDomainDataset):
    """Base of the six Spawrious classes: ``GROUP``, ``TEST`` (locations in ``BREEDS``
    order), ``FILLER`` (O2O only) and ``ONE_TO_ONE`` define a dataset."""

    INPUT_SHAPE = (3, 224, 224)
    CHECKPOINT_FREQ = 100
    N_WORKERS = 8
    PER_BREED = 3168  # images per breed in a training group
    GROUP: Sequence[str] = ()
    TEST: Sequence[str] = ()
    FILLER = ""
    ONE_TO_ONE = True

    def __init__(self, root, test_envs, hparams):
        super().__init__()
        base = spawrious_dir(root)
        size, channels = T.image_geometry(hparams)
        augment = bool((hparams or {}).get("data_augmentation", True))
        self._eval_transform = T.eval_transform(size, channels)
        train_transform = self._train_transform(size, channels) if augment else None
        parts = self.parts()
        self.datasets, self._augmented = [], []
        for i, env_parts in enumerate(parts):
            samples = [(path, CLASSES.index(breed))
                       for part in env_parts
                       for breed, (folder, location, limit) in part.items()
                       for path in list_breed_images(
                           os.path.join(base, folder, location, breed), limit)]
            # env 0 is the test combination whatever test_envs says (as upstream)
            augmented = i > 0 and train_transform is not None
            transform = train_transform if augmented else self._eval_transform
            self.datasets.append(ImageEnvironment(samples, transform))
            self._augmented.append(augmented)
        self.input_shape = (channels, size, size)
        self.num_classes = len(CLASSES)
        self.classes = list(CLASSES)

    def eval_view(self, index):
        if not self._augmented[index]:
            return self.datasets[index]
        return self.datasets[index].with_transform(self._eval_transform)

    @staticmethod
    def _train_transform(size: int, channels: int):
        from torchvision import transforms
        return transforms.Compose([
            transforms.Resize((size, size)),
            transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(0.3, 0.3, 0.3, 0.3),
            transforms.RandomGrayscale(),
        ] + T.tensor_steps(channels))

    @classmethod
    def parts(cls) -> List[List[Dict[str, Tuple[str, str, int]]]]:
        """Per environment, its parts in concatenation order: ``breed -> (folder,
        location, limit)`` (limit -1: every image)."""
        group, test = dict(zip(BREEDS, cls.GROUP)), dict(zip(BREEDS, cls.TEST))
        n = cls.PER_BREED
        if cls.ONE_TO_ONE:
            tests = [{b: (folder, test[b], -1) for b in BREEDS} for folder in ("0", "1")]
            groups = []
            for folder, share in (("0", 0.97), ("1", 0.87)):
                kept = int(share * n)
                groups.append([{b: (folder, group[b], kept) for b in BREEDS},
                               {b: (folder, cls.FILLER, n - kept) for b in BREEDS}])
            return [tests, groups[0], groups[1]]
        swap = {"bulldog": "dachshund", "dachshund": "bulldog", "labrador": "corgi",
                "corgi": "labrador"}  # the second combination swaps the pairs' locations
        tests = [{b: ("0", test[b], -1) for b in BREEDS},
                 {b: ("0", test[swap[b]], -1) for b in BREEDS}]
        group_1 = [{b: ("0", group[b], n) for b in BREEDS}]
        group_2 = [{b: ("0", group[swap[b]], n) for b in BREEDS}]
        return [tests, group_1, group_2]


def _doc(cls) -> type:
    cls.__doc__ = (f"Spawrious {cls.__name__[9:]}: groups {list(cls.GROUP)}, test "
                   f"{list(cls.TEST)}" + (f", filler {cls.FILLER}" if cls.FILLER else ""))
    return cls


@register_dataset(environments=("Test", "SC_group_1", "SC_group_2"))
@_doc
class SpawriousO2O_easy(SpawriousBenchmark):
    GROUP, TEST = ("desert", "jungle", "dirt", "snow"), ("dirt", "snow", "desert", "jungle")
    FILLER = "beach"


@register_dataset(environments=("Test", "SC_group_1", "SC_group_2"))
@_doc
class SpawriousO2O_medium(SpawriousBenchmark):
    GROUP, TEST = ("mountain", "beach", "dirt", "jungle"), ("jungle", "dirt", "beach", "snow")
    FILLER = "desert"


@register_dataset(environments=("Test", "SC_group_1", "SC_group_2"))
@_doc
class SpawriousO2O_hard(SpawriousBenchmark):
    GROUP, TEST = ("jungle", "mountain", "snow", "desert"), ("mountain", "snow", "desert",
                                                             "jungle")
    FILLER = "beach"


@register_dataset(environments=("Test", "SC_group_1", "SC_group_2"))
@_doc
class SpawriousM2M_easy(SpawriousBenchmark):
    GROUP, TEST = ("desert", "mountain", "dirt", "jungle"), ("dirt", "jungle", "mountain",
                                                             "desert")
    ONE_TO_ONE = False


@register_dataset(environments=("Test", "SC_group_1", "SC_group_2"))
@_doc
class SpawriousM2M_medium(SpawriousBenchmark):
    GROUP, TEST = ("beach", "snow", "mountain", "desert"), ("desert", "mountain", "beach",
                                                            "snow")
    ONE_TO_ONE = False


@register_dataset(environments=("Test", "SC_group_1", "SC_group_2"))
@_doc
class SpawriousM2M_hard(SpawriousBenchmark):
    GROUP, TEST = ("dirt", "jungle", "snow", "beach"), ("snow", "beach", "dirt", "jungle")
    ONE_TO_ONE = False
