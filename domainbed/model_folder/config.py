"""``config.json`` of a model folder: what rebuilds the network and its input pipeline
without any run directory, and what its labels and splits mean.

Built from the metadata a training run saves with its weights (``training.setup.model_metadata``:
args, hparams, input shape, class and environment names, input spec, provenance)::

    {"format": "domainbed-model", "format_version": 1,
     "dataset": "PACS", "environments": ["A", "C", "P", "S"], "test_envs": [0],
     "training_environments": ["C", "P", "S"],
     "class_names": ["dog", ...], "num_classes": 7,
     "network": {"backbone": "resnet50", "hparams": {...}, "input_shape": [3, 224, 224],
                 "num_classes": 7, "state_dict": "featurizer.* + classifier.*"},
     "input": {"image_size": 224, "channels": 3, "mean": [...], "std": [...],
               "interpolation": "bilinear", "source": "imagenet"} | null,
     "splits": {"trial_seeds": [0], "holdout_fraction": 0.2, "uda_holdout_fraction": 0.0,
                "class_balanced": false},
     "provenance": {...}}
"""

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

from domainbed.errors import DomainBedError
from domainbed.model_folder.layout import CONFIG_FILE, FORMAT, FORMAT_VERSION

DATASET_HPARAMS = ("decode_cache",)
REQUIRED = ("dataset", "class_names", "num_classes", "network", "input", "splits")


class ModelFolderError(DomainBedError):
    """A model folder that is missing, incomplete or of an unknown format."""


def network_hparams(hparams: Mapping[str, Any], input_shape: Sequence[int]) -> Dict[str, Any]:
    """The hparams that shape the network (``networks.NETWORK_HPARAMS``), with the backbone
    named explicitly and ``pretrained`` off: the weights come from the folder."""
    from domainbed.networks import NETWORK_HPARAMS, backbone_name
    kept = {k: hparams[k] for k in NETWORK_HPARAMS if k in hparams}
    kept["backbone"] = backbone_name(input_shape, hparams)
    kept["pretrained"] = False
    return kept


def model_config(metadata: Mapping[str, Any], trial_seeds: Sequence[int],
                 provenance: Optional[Dict[str, Any]] = None,
                 dataset_facts: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The config of a model trained as ``metadata`` (a run's weight-file metadata) says.

    ``dataset_facts`` (``input_spec.dataset_facts`` of the rebuilt dataset) fills in class
    names, environments and input spec for runs trained before their files held them.
    """
    facts = dict(dataset_facts or {})
    facts.update({k: v for k, v in metadata.items() if k.startswith("model_")})
    args = dict(metadata.get("args") or {})
    hparams = dict(metadata.get("model_hparams") or {})
    input_shape = [int(v) for v in facts.get("model_input_shape") or []]
    if not input_shape or "model_num_classes" not in facts:
        raise ModelFolderError("the weight file's metadata lacks model_input_shape / "
                               "model_num_classes (not a file a training run wrote); export "
                               "a run directory's model.safetensors or model_best.safetensors")
    num_classes = int(facts["model_num_classes"])
    class_names = list(facts.get("model_class_names") or [str(i) for i in range(num_classes)])
    environments = list(facts.get("model_environments") or [])
    test_envs = [int(t) for t in (args.get("test_envs") or []) if int(t) >= 0]
    task = args.get("task", "domain_generalization")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dataset": args.get("dataset"),
        "environments": environments,
        "test_envs": test_envs,
        "training_environments": [e for i, e in enumerate(environments) if i not in test_envs],
        "class_names": class_names,
        "num_classes": num_classes,
        "network": {"backbone": network_hparams(hparams, input_shape)["backbone"],
                    "hparams": network_hparams(hparams, input_shape),
                    "input_shape": input_shape, "num_classes": num_classes,
                    "state_dict": "featurizer.* + classifier.*"},
        "input": facts.get("model_input"),
        # dataset hparams that change the pixels an evaluation reads
        "dataset_hparams": {k: hparams[k] for k in DATASET_HPARAMS if k in hparams},
        "splits": {"trial_seeds": sorted({int(t) for t in trial_seeds}),
                   "holdout_fraction": float(args.get("holdout_fraction", 0.2)),
                   "uda_holdout_fraction": (float(args.get("uda_holdout_fraction") or 0.0)
                                            if task == "domain_adaptation" else 0.0),
                   "class_balanced": bool(hparams.get("class_balanced", False))},
        "provenance": provenance,
    }


def check_config(config: Any, where: str) -> Dict[str, Any]:
    """``config`` if it is a model folder config this version reads, else a
    ``ModelFolderError`` naming what is wrong."""
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelFolderError(f"{where} is not a model folder config (format "
                               f"{FORMAT!r} expected); make one with "
                               "`python -m domainbed_aux.scripts.merge`")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFolderError(f"{where} has format_version {version!r}; this version "
                               f"reads {FORMAT_VERSION}; upgrade the package or re-export it")
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise ModelFolderError(f"{where} lacks {missing}; re-export the model folder")
    if config["network"].get("num_classes") != config["num_classes"]:
        raise ModelFolderError(f"{where}: the network has "
                               f"{config['network'].get('num_classes')} outputs for "
                               f"{config['num_classes']} classes; re-export the model folder")
    if len(config["class_names"]) != config["num_classes"]:
        raise ModelFolderError(f"{where}: {len(config['class_names'])} class names for "
                               f"{config['num_classes']} classes; re-export the model folder")
    return config


def read_config(folder: str) -> Dict[str, Any]:
    """The checked ``config.json`` of the model folder ``folder``."""
    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.isdir(folder):
        raise ModelFolderError(f"model folder {folder!r} does not exist; pass the --output_dir "
                               "of `python -m domainbed_aux.scripts.merge`")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except OSError:
        raise ModelFolderError(f"{folder!r} has no {CONFIG_FILE}: not a model folder; pass "
                               "the --output_dir of `python -m domainbed_aux.scripts.merge`"
                               ) from None
    except ValueError as exc:
        raise ModelFolderError(f"{path} is not valid JSON ({exc}); re-export the model "
                               "folder") from None
    return check_config(config, path)


def environment_index(config: Mapping[str, Any], env: str) -> int:
    """The index of environment ``env`` (an index or a name) of the model's dataset."""
    names: List[str] = list(config.get("environments") or [])
    if str(env).lstrip("-").isdigit():
        index = int(env)
        if names and not 0 <= index < len(names):
            raise ModelFolderError(f"--env {env} is out of range: {config['dataset']} has "
                                   f"{len(names)} environments {names}")
        return index
    if env in names:
        return names.index(env)
    raise ModelFolderError(f"unknown environment {env!r} of {config['dataset']}; known: "
                           f"{', '.join(names) or '(none recorded)'} (or their index)")
