"""Analyses of trained runs: linear mode connectivity, diversity, WiSE-FT, ablations, plots.

Library functions take weights and an ``evaluate(state_dict) -> accuracy`` function (or a
``domainbed_aux.scoring.evaluation.RunEvaluator``) and return JSON-ready dicts; the command line is
``python -m domainbed_aux.scripts.analysis {lmc,diversity,wise_ft,ablations}``.
"""
