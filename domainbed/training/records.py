"""What a run writes per evaluation: results.jsonl lines, the log table, the model metadata."""

import json
import logging
import os
import resource
from typing import Any, Dict, List, Optional

import torch

from domainbed.lib import misc

log = logging.getLogger("domainbed.train")


def peak_mem_gb(device: torch.device) -> float:
    """Peak GPU memory allocated (on CUDA), else the process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 1024 ** 3
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def append_record(path: str, record: Dict[str, Any]) -> None:
    """Append one JSON line (sorted keys) and fsync it."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def log_record(record: Dict[str, Any], last_keys: Optional[List[str]]) -> List[str]:
    """Log the record as a table row (with a header when the keys changed)."""
    keys = sorted(record)
    if keys != last_keys:
        log.info(misc.print_row(keys, colwidth=12))
    log.info(misc.print_row([record[k] for k in keys], colwidth=12))
    return keys


def with_run_info(record: Dict[str, Any], hparams: Dict[str, Any],
                  args_record: Dict[str, Any], init: Optional[dict]) -> Dict[str, Any]:
    """The results.jsonl line of ``record``: plus the run's hparams, args and init."""
    record = dict(record, hparams=hparams, args=args_record)
    if init is not None:
        record["init"] = init
    return record


def model_metadata(args_record: Dict[str, Any], dataset, hparams: Dict[str, Any],
                   n_train_domains: int,
                   provenance: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The metadata saved with every model file of the run: what rebuilds the model, the
    dataset's class and environment names, its input pipeline, and where it was made."""
    from domainbed.datasets.input_spec import dataset_facts
    metadata = {"args": args_record, "model_input_shape": list(dataset.input_shape),
                "model_num_classes": dataset.num_classes, "model_num_domains": n_train_domains,
                "model_hparams": hparams}
    metadata.update(dataset_facts(dataset))
    if provenance is not None:
        metadata["provenance"] = provenance
    return metadata
