"""Multi-domain image-folder datasets: ``<dataset dir>/<domain>/<class>/<image>``.

The benchmark datasets (VLCS, PACS, OfficeHome, TerraIncognita, DomainNet) live in a fixed
sub-folder of ``--data_dir``; ``ImageFolder`` reads the user's own data from ``--data_dir``
itself. Every dataset has ONE sorted class list (the union over its domains), so a class
missing from one domain cannot shift the label indices of the others.
"""

import logging
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from PIL import Image
from torch.utils.data import Dataset

from domainbed.datasets import decode_cache
from domainbed.datasets import transforms as T
from domainbed.datasets.base import MultipleDomainDataset, register_dataset
from domainbed.datasets.input_spec import image_input_spec
from domainbed.errors import DataError
from domainbed.hparams_registry import register_known_hparams

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
DOWNLOAD_COMMAND = "python -m domainbed.scripts.download --data_dir {root} --datasets {name}"

# path -> PIL image, or uint8 (3, H, W) tensor (the decode cache's loader)
ImageLoader = Callable[[str], object]

register_known_hparams(["decode_cache"], "domainbed.datasets.image_folder (decode cache)")


def pil_loader(path: str) -> Image.Image:
    """Open ``path`` with Pillow and decode it fully as an RGB image."""
    with open(path, "rb") as f:
        image = Image.open(f)
        return image.convert("RGB")


_default_loader: ImageLoader = pil_loader


def set_default_loader(loader: Optional[ImageLoader]) -> None:
    """Make ``loader`` (path -> PIL RGB image or uint8 (3, H, W) tensor) the loader of
    datasets built from now on. ``None`` restores ``pil_loader``."""
    global _default_loader
    _default_loader = loader if loader is not None else pil_loader


def get_default_loader() -> ImageLoader:
    return _default_loader


class ImageEnvironment(Dataset):
    """One domain: ``samples`` = [(path, label)], items are ``(transform(image), label)``."""

    def __init__(self, samples: Sequence[Tuple[str, int]], transform=None,
                 loader: Optional[ImageLoader] = None):
        super().__init__()
        self.samples = list(samples)
        self.targets = [label for _, label in self.samples]
        self.transform = transform
        self.loader = loader if loader is not None else get_default_loader()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        view = getattr(self.loader, "view", None)
        if view is not None and getattr(self.transform, "takes_arrays", False):
            image = load_image(view, path)  # a read-only view of the decode cache
        else:
            image = self.load(path)
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    def load(self, path: str):
        """The decoded image at ``path``; an unreadable file raises a one-line DataError."""
        return load_image(self.loader, path)

    def with_transform(self, transform) -> "ImageEnvironment":
        """The same samples and loader under another transform."""
        return ImageEnvironment(self.samples, transform, self.loader)

    def batch_split(self):
        """``(this environment with items that stop before the transform's last step, that
        step)`` when the transform is a two-stage ``Pipeline`` (the loaders then apply the
        last step to whole batches: 4x smaller uint8 batches between processes, the same
        numbers); ``None`` for other transforms."""
        finish = getattr(self.transform, "finish", None)
        steps = getattr(self.transform, "steps", None)
        if finish is None or steps is None:
            return None
        return self.with_transform(steps), finish


def load_image(loader: ImageLoader, path: str):
    """``loader(path)``; an unreadable file raises a one-line DataError naming the fix."""
    try:
        return loader(path)
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(
            f"cannot read image file {path!r} ({reason}); delete or replace the file, or "
            f"delete the dataset folder and download it again with "
            f"`python -m domainbed.scripts.download`") from exc


def checked_pil_loader(path: str) -> Image.Image:
    """``pil_loader`` with ``load_image``'s errors (module level: picklable)."""
    return load_image(pil_loader, path)


def decode_cache_enabled(hparams) -> bool:
    """``hparams['decode_cache']`` (default False); anything but a bool raises DataError."""
    value = (hparams or {}).get("decode_cache", False)
    if not isinstance(value, bool):
        raise DataError(f"hparams 'decode_cache' must be true or false, got {value!r}")
    return value


def cached_loader(samples: Sequence[Tuple[str, int]], dataset_dir: str,
                  size: int) -> "decode_cache.CachedLoader":
    """A loader reading every image of ``samples`` from the dataset's decode cache (built
    on first use, at the shorter side ``cache_side`` gives for ``size``)."""
    from domainbed.lib.fast_data_loader import available_cpus
    side = decode_cache.cache_side(size, T.CROP_SCALE[0], T.CROP_RATIO[0])
    store = decode_cache.open_store([path for path, _ in samples], dataset_dir, side,
                                    checked_pil_loader, workers=available_cpus())
    return decode_cache.CachedLoader(store)


def _visible_entries(path: str):
    with os.scandir(path) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def list_subfolders(path: str) -> List[str]:
    """Sorted names of the non-hidden sub-folders of ``path``."""
    return [e.name for e in _visible_entries(path) if e.is_dir()]


def is_image_file(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_images(folder: str) -> List[str]:
    """Paths of the image files under ``folder`` (recursive, sorted, hidden entries skipped)."""
    paths = []
    for entry in _visible_entries(folder):
        if entry.is_dir():
            paths.extend(list_images(entry.path))
        elif is_image_file(entry.name):
            paths.append(entry.path)
    return paths


def find_classes(domain_dirs: Sequence[str]) -> List[str]:
    """The sorted union of class folder names over ``domain_dirs``."""
    classes = set()
    for domain_dir in domain_dirs:
        classes.update(list_subfolders(domain_dir))
    return sorted(classes)


def scan_domain(domain_dir: str, class_to_idx: Dict[str, int]) -> List[Tuple[str, int]]:
    """``(path, label)`` for every image of ``domain_dir``, class by class in sorted order."""
    samples = []
    for name in list_subfolders(domain_dir):
        samples.extend((path, class_to_idx[name])
                       for path in list_images(os.path.join(domain_dir, name)))
    return samples


class MultipleEnvironmentImageFolder(MultipleDomainDataset):
    """Domains are sub-folders of ``<root>/<SUBDIR>``, classes are sub-folders of a domain.

    Training environments (not in ``test_envs``) use the train augmentation when
    ``hparams['data_augmentation']`` is true (the default); ``eval_view(i)`` always gives
    environment ``i`` under the deterministic eval transform. Both are the uint8-tensor
    (torchvision v2) transforms. ``hparams['decode_cache']`` (default False) reads the
    images from the dataset's decode cache (``decode_cache.py``), built on first use.
    """

    SUBDIR = ""
    DOWNLOAD_NAME: Optional[str] = None
    N_STEPS = 5001
    CHECKPOINT_FREQ = 300
    N_WORKERS = 8
    INPUT_SHAPE = (3, 224, 224)
    # the domain folder on disk of each environment, in ENVIRONMENTS order; None: the
    # environment names are the folders
    ENVIRONMENT_FOLDERS: Optional[Sequence[str]] = None

    def __init__(self, root, test_envs, hparams, loader: Optional[ImageLoader] = None):
        super().__init__()
        dataset_dir = self.dataset_dir(root)
        environments = self.environments(root)
        folders = self.environment_folders(root)
        domain_dirs = [os.path.join(dataset_dir, folder) for folder in folders]
        missing = [f for f, d in zip(folders, domain_dirs) if not os.path.isdir(d)]
        if missing:
            raise DataError(
                f"{type(self).__name__}: domain folder(s) {missing} missing in {dataset_dir!r} "
                f"(found {list_subfolders(dataset_dir)}; expected {folders}); "
                f"{self._fix(root)}")
        self.ENVIRONMENTS = list(environments)
        self.classes = find_classes(domain_dirs)
        if not self.classes:
            raise DataError(f"{type(self).__name__}: no class folders under {dataset_dir!r}; "
                            f"expected <domain>/<class>/<image>; {self._fix(root)}")
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        augment = bool(hparams.get("data_augmentation", True)) if hparams else True
        # the backbone's input pipeline (timm: its pretrained config; else ImageNet's)
        self.input_spec = image_input_spec(hparams)
        size, channels = self.input_spec.image_size, self.input_spec.channels
        self._eval_transform = self.input_spec.eval_transform()
        test_envs = set(test_envs or [])
        env_samples = []
        for domain_dir in domain_dirs:
            samples = scan_domain(domain_dir, self.class_to_idx)
            if not samples:
                raise DataError(
                    f"{type(self).__name__}: domain folder {domain_dir!r} holds no images "
                    f"(accepted extensions: {', '.join(IMAGE_EXTENSIONS)}); {self._fix(root)}")
            env_samples.append(samples)
        if decode_cache_enabled(hparams):
            if loader is not None or get_default_loader() is not pil_loader:
                raise DataError("hparams 'decode_cache' decodes with the default Pillow "
                                "loader; drop the custom loader or set decode_cache to false")
            loader = cached_loader([s for samples in env_samples for s in samples],
                                   dataset_dir, size)
        self.datasets = []
        for i, samples in enumerate(env_samples):
            augmented = augment and i not in test_envs
            transform = (self.input_spec.train_transform() if augmented
                         else self._eval_transform)
            self.datasets.append(ImageEnvironment(samples, transform, loader))
        self._augmented = [augment and i not in test_envs for i in range(len(domain_dirs))]
        self._eval_views: Dict[int, ImageEnvironment] = {}
        self.input_shape = (channels, size, size)
        self.num_classes = len(self.classes)

    def eval_view(self, index: int) -> ImageEnvironment:
        """Environment ``index`` with the eval transform (same samples, no augmentation)."""
        if not self._augmented[index]:
            return self.datasets[index]
        if index not in self._eval_views:
            self._eval_views[index] = self.datasets[index].with_transform(self._eval_transform)
        return self._eval_views[index]

    @classmethod
    def environment_folders(cls, root=None) -> List[str]:
        """The domain folder on disk of each environment, in ``ENVIRONMENTS`` order
        (``ENVIRONMENT_FOLDERS`` names the folders of upstream's short labels)."""
        if cls.ENVIRONMENT_FOLDERS is not None:
            return list(cls.ENVIRONMENT_FOLDERS)
        return cls.environments(root)

    @classmethod
    def dataset_dir(cls, root) -> str:
        """``<root>/<SUBDIR>``; a missing folder raises DataError naming the fix."""
        if root is None:
            raise DataError(f"{cls.__name__} reads images from disk: pass --data_dir")
        path = os.path.join(root, cls.SUBDIR) if cls.SUBDIR else root
        if not os.path.isdir(path):
            raise DataError(f"{cls.__name__}: data folder {path!r} does not exist; "
                            f"{cls._fix(root)}")
        return path

    @classmethod
    def _fix(cls, root) -> str:
        if cls.DOWNLOAD_NAME is None:
            return "lay the images out as <data_dir>/<domain>/<class>/<image>"
        command = DOWNLOAD_COMMAND.format(root=root, name=cls.DOWNLOAD_NAME)
        return f"download it with `{command}`"


@register_dataset(environments=("C", "L", "S", "V"))
class VLCS(MultipleEnvironmentImageFolder):
    SUBDIR = "VLCS"
    DOWNLOAD_NAME = "VLCS"
    ENVIRONMENT_FOLDERS = ("Caltech101", "LabelMe", "SUN09", "VOC2007")


@register_dataset(environments=("A", "C", "P", "S"))
class PACS(MultipleEnvironmentImageFolder):
    SUBDIR = "PACS"
    DOWNLOAD_NAME = "PACS"
    ENVIRONMENT_FOLDERS = ("art_painting", "cartoon", "photo", "sketch")


@register_dataset(environments=("A", "C", "P", "R"))
class OfficeHome(MultipleEnvironmentImageFolder):
    SUBDIR = "office_home"
    DOWNLOAD_NAME = "OfficeHome"
    ENVIRONMENT_FOLDERS = ("Art", "Clipart", "Product", "Real World")


@register_dataset(environments=("L100", "L38", "L43", "L46"))
class TerraIncognita(MultipleEnvironmentImageFolder):
    SUBDIR = "terra_incognita"
    DOWNLOAD_NAME = "TerraIncognita"
    ENVIRONMENT_FOLDERS = ("location_100", "location_38", "location_43", "location_46")


@register_dataset(environments=("clip", "info", "paint", "quick", "real", "sketch"))
class DomainNet(MultipleEnvironmentImageFolder):
    SUBDIR = "domain_net"
    DOWNLOAD_NAME = "DomainNet"
    N_STEPS = 5001
    CHECKPOINT_FREQ = 1000
    ENVIRONMENT_FOLDERS = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")


@register_dataset("ImageFolder", environments_from_data=True)
class ImageFolder(MultipleEnvironmentImageFolder):
    """The user's own data: ``--data_dir`` is ``<data_dir>/<domain>/<class>/<image>``."""

    SUBDIR = ""

    @classmethod
    def environments(cls, root=None) -> List[str]:
        """The sorted domain folders of ``root``."""
        domains = list_subfolders(cls.dataset_dir(root))
        if not domains:
            raise DataError(f"ImageFolder: no domain folders in {root!r}; {cls._fix(root)}")
        return domains
