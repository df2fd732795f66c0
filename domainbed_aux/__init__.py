"""Model ratatouille and its family on top of the DomainBed core.

The core loads two entry points of this package (setup.py): ``domainbed_aux.plugin``
(``domainbed.plugins``) registers its algorithms (InterTraining, Ratatouille, Fusing,
LinearProbe, LPFT) and its sweep options; ``domainbed_aux.hooks``
(``domainbed.sweep_plugins``) only the sweep options and hooks, without importing torch, for
commands that list jobs or read records. The planning they call is ``planning`` (which job
starts from what) and ``recipe`` (the recipe's stages). Importing the package itself registers nothing.
"""
