"""Reading auxiliary runs: where they are, what they recorded, and their featurizer."""

import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from domainbed.lib import run_dir as rd
from domainbed.lib.weights import extract_state_dict, load_file
from domainbed_aux.pool.members import PoolError, PoolMember, featurizer_state_dict

# statuses of a run directory (see read_run_member)
OK, INCOMPLETE, TEST_ENV, TARGET = "ok", "incomplete", "test_env", "target"
DIVERGED = "diverged"  # finished with a non-finite loss: no usable featurizer
# files that mark a directory as a run directory
MARKERS = (rd.RESULTS, rd.MODEL, rd.DONE)


def find_run_dirs(aux_dirs: Iterable[str], skip: Sequence[str] = ()) -> List[str]:
    """Run directories (holding results.jsonl, a model or ``done``) under ``aux_dirs``, at
    any depth (the core's reader, :func:`domainbed.lib.run_dir.find_run_dirs`)."""
    found = []
    for top in aux_dirs:
        if not os.path.isdir(top):
            raise PoolError(f"auxiliary directory {top!r} does not exist; give the folder of "
                            "the auxiliary sweeps (e.g. AUX holding AUX/<Dataset>_notest/<run>)")
        found += [path for path, _ in rd.find_run_dirs(top, max_depth=None, markers=MARKERS,
                                                       skip=skip)]
    return sorted(set(found))


def read_run_record(run_dir: str) -> Dict[str, Any]:
    """The ``args`` and ``hparams`` a run recorded (first results.jsonl record holding them)."""
    return rd.run_args(run_dir)


def read_run_member(run_dir: str, pool_root: str, exclude_dataset: Optional[str],
                    require_no_test_env: bool
                    ) -> Tuple[str, Optional[Tuple[PoolMember, Dict[str, torch.Tensor]]]]:
    """``(status, (member, featurizer))``; status is OK, INCOMPLETE, DIVERGED, TEST_ENV or
    TARGET.

    The member has no file yet; its ``run_dir`` is relative to ``pool_root``. The dataset is
    the ``dataset`` argument the run recorded (in results.jsonl, else in the model's
    metadata), never the name of a folder.
    """
    if not os.path.exists(os.path.join(run_dir, rd.DONE)):
        return INCOMPLETE, None
    if rd.read_divergence(run_dir) is not None:
        return DIVERGED, None
    info = read_run_record(run_dir)
    model_path = os.path.join(run_dir, rd.MODEL)
    content = None
    if not info:  # fall back on the args saved with the model
        content, metadata = load_file(model_path, device="cpu")
        if isinstance(metadata.get("args"), dict):
            info = {"args": metadata["args"], "hparams": metadata.get("hparams") or {}}
    args = info.get("args") or {}
    dataset = args.get("dataset")
    if not dataset:
        raise PoolError(f"{run_dir}: the run recorded no 'dataset' argument (neither in "
                        f"{rd.RESULTS} nor in {rd.MODEL} metadata); cannot tell its dataset")
    test_envs = args.get("test_envs")
    if not isinstance(test_envs, list):
        test_envs = [] if test_envs is None else [test_envs]
    if require_no_test_env and any(int(t) >= 0 for t in test_envs):
        return TEST_ENV, None
    if exclude_dataset is not None and dataset == exclude_dataset:
        return TARGET, None
    if content is None:
        content, _ = load_file(model_path, device="cpu")
    featurizer = featurizer_state_dict(extract_state_dict(content), source=model_path)
    del content
    member = PoolMember(kind="aux", dataset=dataset, hparams=info.get("hparams") or {},
                        hparams_seed=args.get("hparams_seed"), trial_seed=args.get("trial_seed"),
                        run_dir=os.path.relpath(run_dir, pool_root))
    return OK, (member, featurizer)
