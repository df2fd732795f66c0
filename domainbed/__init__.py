"""DomainBed core: datasets, networks, algorithms, training, sweeps and model selection.

Importing the package is cheap: sub-modules are imported on use.
"""

__version__ = "0.1.0"
