"""Model ratatouille and its family on top of the DomainBed core.

Importing this package registers its algorithms and datasets into the core's registries.
"""
