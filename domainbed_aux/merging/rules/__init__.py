"""One merge rule per file, each registered with ``@register_rule`` (see
``domainbed_aux/merging/registry.py``); this package is scanned, so a new file is all a new
rule needs."""
