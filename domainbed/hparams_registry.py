"""Hyperparameters: defaults and random draws, declared per name with per-name seeding.

Each hyperparameter draws from ``np.random.RandomState(seed_hash(seed, name))`` so adding
one never shifts another. Base hyperparameters are declared here; an algorithm declares
its own in its ``declare_hparams`` classmethod (inherited along its class hierarchy).
A *space* rewrites some of them: ``upstream`` (DomainBed's) or ``mild`` (the paper's
Table 3, used for soups, DiWA and ratatouille).
"""

import difflib
from typing import Callable, Dict, Iterable, List, Mapping, Set, Tuple

import numpy as np

from domainbed.errors import DomainBedError
from domainbed.lib.seeds import seed_hash
from domainbed.registry import Registry

# upstream's list; used when the dataset class is unknown
SMALL_IMAGES = ["Debug28", "RotatedMNIST", "ColoredMNIST"]

HPARAM_SPACES: Registry = Registry("hparams space")

# names that code reads (``hparams.get(name, default)``) but that no declaration draws, so
# they are set only through --hparams; name -> who reads it. Plugins and backbones add theirs
# with ``register_known_hparams``.
KNOWN_HPARAMS: Dict[str, str] = {
    "backbone": "domainbed.networks (backbone by name)",
    "pretrained": "domainbed.networks (False: random init)",
    "pretrained_path": "domainbed.networks (weight file of the backbone)",
    "dropout_reference_width": "domainbed.networks (resnet_dropout given at this feature width)",
}


class _Declarations:
    """Collects ``name -> (default, random value)`` for one seed."""

    def __init__(self, seed: int):
        self.seed = seed
        self.values: Dict[str, Tuple[object, object]] = {}

    def _draw(self, name: str, random_fn: Callable[[np.random.RandomState], object]):
        return random_fn(np.random.RandomState(seed_hash(self.seed, name)))

    def __call__(self, name: str, default, random_fn) -> None:
        if name in self.values:
            raise ValueError(f"hyperparameter {name!r} declared twice")
        self.values[name] = (default, self._draw(name, random_fn))

    def override(self, name: str, default, random_fn) -> None:
        """Replace a declaration (used by spaces)."""
        self.values[name] = (default, self._draw(name, random_fn))


class _Names(_Declarations):
    """The declarations without their random draws (``None``): the names, for key checks.
    A draw builds a seeded ``RandomState`` (about 80 us); listing every algorithm's names
    that way cost half a second per run."""

    def _draw(self, name: str, random_fn: Callable[[np.random.RandomState], object]):
        return None


def _to_python(value):
    return value.item() if isinstance(value, np.generic) else value


def is_small_images(dataset: str) -> bool:
    from domainbed.datasets.registry import get_dataset_class
    try:
        shape = get_dataset_class(dataset).INPUT_SHAPE
    except KeyError:
        return dataset in SMALL_IMAGES
    return shape is not None and (len(shape) == 1 or shape[-1] < 224)


def _dataset_backbone(dataset: str):
    from domainbed.datasets.registry import get_dataset_class
    try:
        return getattr(get_dataset_class(dataset), "DEFAULT_BACKBONE", None)
    except KeyError:
        return None


def _declare_base(dataset: str, hp: _Declarations, small: bool) -> None:
    backbone = _dataset_backbone(dataset)
    if backbone:  # datasets may name their backbone (e.g. the embedded benchmark's tiny CNN)
        hp("backbone", backbone, lambda r: backbone)
    hp("data_augmentation", True, lambda r: True)
    hp("resnet18", False, lambda r: False)
    # upstream HEAD defaults to True (timm's resnet50.ram_in1k); the paper and DomainBed's
    # published tables used torchvision's ImageNet weights: our one documented departure
    hp("resnet50_augmix", False, lambda r: False)
    hp("dinov2", False, lambda r: False)
    hp("vit", False, lambda r: False)
    hp("vit_attn_tune", False, lambda r: False)
    hp("freeze_bn", False, lambda r: False)
    hp("lars", False, lambda r: False)
    hp("linear_steps", 500, lambda r: 500)
    hp("resnet_dropout", 0.0, lambda r: float(r.choice([0.0, 0.1, 0.5])))
    hp("vit_dropout", 0.0, lambda r: float(r.choice([0.0, 0.1, 0.5])))
    hp("class_balanced", False, lambda r: False)
    hp("nonlinear_classifier", False, lambda r: bool(r.choice([False, False])))
    hp("mlp_width", 256, lambda r: int(2 ** r.uniform(6, 10)))
    hp("mlp_depth", 3, lambda r: int(r.choice([3, 4, 5])))
    hp("mlp_dropout", 0.0, lambda r: float(r.choice([0.0, 0.1, 0.5])))
    if small:
        hp("lr", 1e-3, lambda r: 10 ** r.uniform(-4.5, -2.5))
        hp("weight_decay", 0.0, lambda r: 0.0)
        hp("batch_size", 64, lambda r: int(2 ** r.uniform(3, 9)))
    else:
        hp("lr", 5e-5, lambda r: 10 ** r.uniform(-5, -3.5))
        hp("weight_decay", 0.0, lambda r: 10 ** r.uniform(-6, -2))
        if dataset == "DomainNet":
            hp("batch_size", 32, lambda r: int(2 ** r.uniform(3, 5)))
        else:
            hp("batch_size", 32, lambda r: int(2 ** r.uniform(3, 5.5)))


@HPARAM_SPACES.register("upstream")
def _upstream_space(dataset: str, hp: _Declarations, small: bool) -> None:
    """DomainBed's distributions: nothing to rewrite."""


@HPARAM_SPACES.register("mild")
def _mild_space(dataset: str, hp: _Declarations, small: bool) -> None:
    """The paper's Table 3; choice lists in the order the paper's code draws them.

    The learning rates are {0.2, 0.6, 1} x the dataset's default learning rate: the paper's
    {1e-5, 3e-5, 5e-5} on big images (default 5e-5), {2e-4, 6e-4, 1e-3} on small ones
    (default 1e-3), so the space stays "mild" (a 5x span) on every dataset.
    """
    default_lr = hp.values["lr"][0]
    lrs = [float(f"{factor * default_lr:.6g}") for factor in (0.2, 0.6, 1.0)]
    hp.override("lr", default_lr, lambda r: float(r.choice(lrs)))
    hp.override("batch_size", 32, lambda r: 32)
    hp.override("resnet_dropout", 0.0, lambda r: float(r.choice([0.0, 0.1, 0.5])))
    hp.override("weight_decay", 0.0, lambda r: float(r.choice([1e-4, 1e-6])))
    hp.override("freeze_bn", True, lambda r: True)  # the paper froze batch norm


def _declarations(algorithm: str, dataset: str, seed: int, space: str,
                  kind: type = _Declarations) -> _Declarations:
    from domainbed.algorithms.registry import get_algorithm_class
    algorithm_class = get_algorithm_class(algorithm)
    space_fn = HPARAM_SPACES.get(space)
    small = is_small_images(dataset)
    hp = kind(seed)
    _declare_base(dataset, hp, small)
    for cls in reversed(algorithm_class.__mro__):
        declare = cls.__dict__.get("declare_hparams")
        if declare is not None:
            declare.__func__(algorithm_class, dataset, hp, small)
    space_fn(dataset, hp, small)
    return hp


def default_hparams(algorithm: str, dataset: str, space: str = "upstream") -> dict:
    """The default hyperparameters of ``algorithm`` on ``dataset``."""
    hp = _declarations(algorithm, dataset, 0, space)
    return {name: _to_python(default) for name, (default, _) in hp.values.items()}


def random_hparams(algorithm: str, dataset: str, seed: int, space: str = "upstream") -> dict:
    """A random draw; each name uses its own ``RandomState(seed_hash(seed, name))``."""
    hp = _declarations(algorithm, dataset, seed, space)
    return {name: _to_python(value) for name, (_, value) in hp.values.items()}


def get_hparams(algorithm: str, dataset: str, hparams_seed: int, trial_seed: int,
                space: str = "upstream") -> dict:
    """What a training run uses: defaults for ``hparams_seed`` 0, else a seeded draw."""
    if hparams_seed == 0:
        return default_hparams(algorithm, dataset, space)
    return random_hparams(algorithm, dataset, seed_hash(hparams_seed, trial_seed), space)


def register_known_hparams(names: Iterable[str], owner: str) -> None:
    """Declare hyperparameter names that ``owner`` (a plugin, a backbone) reads without a
    registry declaration, so that ``--hparams`` accepts them."""
    for name in names:
        KNOWN_HPARAMS.setdefault(str(name), owner)


def known_hparams(dataset: str, extra_known: Iterable[str] = ()) -> Set[str]:
    """Every name some algorithm, space, dataset or registered reader knows, for ``dataset``
    and for both image-size branches (a name declared only for small images still counts)."""
    from domainbed.algorithms.registry import algorithm_names
    names = set(KNOWN_HPARAMS) | set(extra_known)
    for algorithm in algorithm_names():
        for ds in dict.fromkeys([dataset, "Debug28", "Debug224"]):
            for space in HPARAM_SPACES:
                names.update(_declarations(algorithm, ds, 0, space, _Names).values)
    return names


def unknown_hparams(algorithm: str, dataset: str, overrides: Mapping[str, object],
                    extra_known: Iterable[str] = (), space: str = "upstream",
                    where: str = "--hparams") -> List[str]:
    """One problem line per ``overrides`` key that no algorithm, backbone, dataset or space
    declares (a typo would otherwise be ignored silently: nothing reads it), each naming the
    closest known name; [] when every key is known."""
    extra_known = list(extra_known)
    own = set(_declarations(algorithm, dataset, 0, space, _Names).values) | set(KNOWN_HPARAMS)
    unknown = [k for k in overrides if k not in own and k not in extra_known]
    if not unknown:
        return []
    known = known_hparams(dataset, extra_known)
    problems = []
    for key in (k for k in unknown if k not in known):
        # prefer a name this run declares (lr_typo -> lr, not another algorithm's lr_g)
        closest = (difflib.get_close_matches(key, sorted(own), n=1, cutoff=0.6)
                   or difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.0))
        hint = f"did you mean {closest[0]!r}?" if closest else "no hyperparameter is known"
        problems.append(
            f"unknown hyperparameter {key!r} in {where} (no algorithm, backbone, dataset or "
            f"space declares it); {hint} Fix the key, or, for a name a plugin reads, declare "
            "it with domainbed.hparams_registry.register_known_hparams")
    return problems


def check_hparams_keys(algorithm: str, dataset: str, overrides: Mapping[str, object],
                       extra_known: Iterable[str] = (), space: str = "upstream") -> None:
    """Raise ``DomainBedError`` naming the closest known name when an ``--hparams`` key is
    declared by no algorithm, backbone, dataset or space (see ``unknown_hparams``)."""
    problems = unknown_hparams(algorithm, dataset, overrides, extra_known, space)
    if problems:
        raise DomainBedError(problems[0])
