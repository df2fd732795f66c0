"""``seed_hash``: every seed the package derives comes from this one function (torch-free,
so that the sweep derives job seeds without importing torch; ``domainbed.lib.misc`` re-exports
it under upstream's name)."""

import hashlib
from typing import Any


def seed_hash(*args: Any) -> int:
    """Derive an integer seed from the arguments: md5 of ``str(args)`` mod 2**31."""
    return int(hashlib.md5(str(args).encode("utf-8")).hexdigest(), 16) % (2 ** 31)
