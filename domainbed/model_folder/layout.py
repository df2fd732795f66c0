"""The files of a model folder, and the one way their JSON is written (byte-reproducible).

A model folder is the unit that leaves the tool, laid out as a Hugging Face hub model
repository (``config.json`` + ``model.safetensors`` + ``README.md``) so that
``huggingface_hub.upload_folder`` can publish it as it is::

    model.safetensors   one network: featurizer.* + classifier.* (the library's keys)
    config.json         what rebuilds the network and its input pipeline
    merge.json          how it was made: rule, members, their scores, the greedy trace
    README.md           the model card
"""

import json
from typing import Any

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MERGE_FILE = "merge.json"
CARD_FILE = "README.md"
FILES = (MODEL_FILE, CONFIG_FILE, MERGE_FILE, CARD_FILE)

FORMAT = "domainbed-model"
FORMAT_VERSION = 1


def json_text(obj: Any) -> str:
    """Sorted keys, two-space indents, a final newline: the same object gives the same
    bytes in every process."""
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
