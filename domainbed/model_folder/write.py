"""``write_model_folder``: the four files of a model folder, byte-reproducible."""

import logging
import os
from typing import Any, Dict, Mapping

import torch

from domainbed.lib.atomic import atomic_write_text
from domainbed.lib.weights import save_weights
from domainbed.model_folder.card import model_card
from domainbed.model_folder.config import ModelFolderError, check_config
from domainbed.model_folder.layout import (CARD_FILE, CONFIG_FILE, FILES, MERGE_FILE,
                                           MODEL_FILE, json_text)
from domainbed.model_folder.network import network_state

log = logging.getLogger(__name__)


def _check_output_dir(output_dir: str) -> None:
    """A new, empty or model folder; anything else is refused (nothing is overwritten)."""
    if not os.path.exists(output_dir):
        return
    if not os.path.isdir(output_dir):
        raise ModelFolderError(f"--output_dir {output_dir!r} is a file; give a folder")
    entries = [e for e in os.listdir(output_dir) if not e.startswith(".")]
    if entries and CONFIG_FILE not in entries:
        raise ModelFolderError(f"--output_dir {output_dir!r} holds files that are not a model "
                               f"folder ({sorted(entries)[:3]}); give a new or empty folder")


def write_model_folder(output_dir: str, state_dict: Mapping[str, torch.Tensor],
                       config: Dict[str, Any], merge: Dict[str, Any]) -> Dict[str, str]:
    """Write ``model.safetensors`` (the featurizer and classifier tensors of
    ``state_dict``, with ``config`` in its metadata), ``config.json``, ``merge.json`` and
    the model card into ``output_dir``; returns ``{file name: path}``. Each file is written
    atomically; the same inputs give the same bytes."""
    check_config(config, "the model config")
    _check_output_dir(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    paths = {name: os.path.join(output_dir, name) for name in FILES}
    save_weights(paths[MODEL_FILE], network_state(state_dict),
                 metadata={"model_folder": config, "provenance": config.get("provenance")})
    atomic_write_text(paths[CONFIG_FILE], json_text(config))
    atomic_write_text(paths[MERGE_FILE], json_text(merge))
    atomic_write_text(paths[CARD_FILE], model_card(config, merge))
    log.info("model folder written: %s", output_dir)
    return paths
