"""Scoring finished runs: read them (``runs``: ``RunInfo``, ``read_run``, ``find_runs``),
rebuild their splits and score weights on them (``evaluation``), average their weights
(``soups``) or their predictions (``ensembles``)."""
