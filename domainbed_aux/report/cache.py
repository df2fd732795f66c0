"""The report's evaluation cache: one JSON file per (kind, rule, split, member files)."""

import hashlib
import json
import logging
import os
from typing import Any, Optional, Sequence

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # 2: members are best checkpoints by default; 3: runs in order_key order
CACHE_DIR_NAME = ".ratatouille_cache"


class EvaluationCache:
    """JSON files ``<dir>/<sha256>.json``, keyed by the member files' real paths, sizes and
    modification times (a retrained run is evaluated again); no directory: no cache."""

    def __init__(self, directory: Optional[str]):
        self.directory = directory

    @staticmethod
    def key(kind: str, rule: str, split: str, runs: Sequence[Any],
            data_dir: Optional[str]) -> str:
        members = []
        for run in sorted(runs, key=lambda r: r.run_dir):
            st = os.stat(run.model_path)
            members.append([os.path.realpath(run.model_path), st.st_size, st.st_mtime_ns])
        material = {"version": CACHE_VERSION, "kind": kind, "rule": rule, "split": split,
                    "data_dir": data_dir, "members": members}
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()

    def get(self, key: str) -> Optional[dict]:
        if not self.directory:
            return None
        path = os.path.join(self.directory, key + ".json")
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def put(self, key: str, value: dict) -> None:
        if not self.directory:
            return
        from domainbed.lib.misc import atomic_write_text
        try:
            atomic_write_text(os.path.join(self.directory, key + ".json"),
                              json.dumps(value, indent=1))
        except OSError as exc:
            log.warning("cannot write the evaluation cache in %s: %s", self.directory, exc)
