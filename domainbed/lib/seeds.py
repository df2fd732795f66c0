"""``seed_hash``, torch-free: the sweep derives job seeds with it without importing torch
(``domainbed.lib.misc.seed_hash`` is the same function; misc imports torch)."""

import hashlib
from typing import Any


def seed_hash(*args: Any) -> int:
    """Derive an integer seed from the arguments: md5 of ``str(args)`` mod 2**31."""
    return int(hashlib.md5(str(args).encode("utf-8")).hexdigest(), 16) % (2 ** 31)
