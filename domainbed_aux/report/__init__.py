"""The paper's Table 1: a registry of rows (``registry``), each registered where it is computed,
and their row provider for ``domainbed.reports.build_report`` (``provider``, ``build``).

Per dataset and test domain, over the finished runs of a sweep (one value per trial seed,
shown as ``mean +/- se``; dagger rows have one value, shown ``x +/- 0.0``):

- ID-val rows: the core's training-domain validation selection over the runs of a family
  ("Vanilla fine-tuning (ID val)" over ERM runs; "LP-FT (ID val)", "CORAL (ID val)",
  "SWAD (loss-aware trajectory)" and "MA (uniform trajectory)" over the runs of LPFT,
  CORAL, SWAD and MA -- a SWAD run counts by its record of the averaged window --;
  "Inter-training (ID val)" over InterTraining/Ratatouille runs, "Fusing (ID val)" over
  Fusing runs);
- "WiSE-FT (a=0.5)": per trial seed, the ERM run with the best ID-validation accuracy
  (of its best checkpoint), interpolated halfway back to its initialisation (its
  ``--init_from`` file, e.g. the linear probe, so LP-FT then WiSE-FT; see
  ``analysis.wise_ft``); the row is left out
  when the runs have no known initialisation;
- "Ensemble*" rows: softmax-averaged predictions of every run of a trial seed;
- soup rows: uniform and greedy soups of every run of a trial seed, and the uniform soup of
  every trial together ("dagger"; only when the runs hold more than one trial seed).

Soups, ensembles, WiSE-FT and re-scored rows use each run's best-ID-validation checkpoint
(``model_best.safetensors``, the paper's appendix F.1; MA and SWAD runs: their averaged
final model); ``weights="final"`` uses the final weights instead, and the report says which.

Runs whose recorded init has ``robust: true`` form separate "Robust ..." rows. Rows without
runs are left out. Every row is scored on ``env{test}_in`` (the selection rows' split); with
``full_domain`` on the whole test domain instead, and the ID-val rows then pick, per trial
seed, the run whose best checkpoint has the best ID-validation accuracy (the checkpoint that
training-domain validation selects) and score that checkpoint. Evaluations are cached as JSON
files keyed by the member files' paths, sizes and modification times (``cache``), so a second
report is fast.
"""

from domainbed_aux.report.build import build_table1
from domainbed_aux.report.cache import CACHE_DIR_NAME, CACHE_VERSION, EvaluationCache
from domainbed_aux.report.provider import Table1Rows
from domainbed_aux.report.registry import (DAGGER_SEED, TABLE1_ROWS, Table1Row, families,
                                           family_of, register, robust_name, row_names,
                                           table1_rows)

__all__ = ["CACHE_DIR_NAME", "CACHE_VERSION", "DAGGER_SEED", "EvaluationCache",
           "TABLE1_ROWS", "Table1Row", "Table1Rows", "build_table1", "families", "family_of",
           "register",
           "robust_name", "row_names", "table1_rows"]
