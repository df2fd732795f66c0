"""Where a run starts: the shared linear probe and the init files built on it.

Modules (import them directly; this package imports nothing, so that torch loads only when
an init is built): ``record`` (the ``init`` record and the one writer of init files),
``probe`` (the shared linear probe ``w_lp`` and phi_pt), ``choice`` (which pool member(s)
start a run, fusing coefficients), ``files`` (composed init files ``(w_lp, phi)``).
"""
