"""Source-level rules of the packages: no private torch API (the first torch release that
changes it would break training), and each derived-seed function defined once."""

import os
import re

from tests.fixtures.paths import package_sources

# reference-count and storage internals the input pipeline once relied on, and torch's C
# extension module as a whole
PRIVATE_TORCH = [r"sys\.getrefcount", r"\._use_count\b", r"_storage_Use_Count", r"\._cdata\b",
                 r"\btorch\._C\b"]


def _sources():
    return package_sources()


def _occurrences(patterns):
    """``path:line: match`` of every match of ``patterns`` in the packages."""
    return [f"{path}:{text[:m.start()].count(chr(10)) + 1}: {m.group(0)}"
            for path, text in _sources() for pattern in patterns
            for m in re.finditer(pattern, text)]


def test_the_packages_use_no_private_torch_api():
    found = _occurrences(PRIVATE_TORCH)
    assert found == []


def test_the_scan_sees_the_packages_and_would_see_a_private_name():
    sources = dict(_sources())
    assert "domainbed/lib/fast_data_loader.py" in {p.replace(os.sep, "/") for p in sources}
    planted = "n = sys.getrefcount(buf)\nok = t._use_count() == 1 and torch._C.x(s._cdata)\n"
    assert sum(len(re.findall(p, planted)) for p in PRIVATE_TORCH) == 4


def test_seed_hash_is_defined_once():
    where = [path for path, text in _sources() if re.search(r"^def seed_hash\(", text, re.M)]
    assert [p.replace(os.sep, "/") for p in where] == ["domainbed/lib/seeds.py"]


# argparse's private attributes: parsers are generated from typed options
# (domainbed.lib.options), whose names and defaults are read from the dataclasses instead
PRIVATE_ARGPARSE = [r"\._actions\b", r"\._option_string_actions\b"]


def test_the_packages_use_no_private_argparse_api():
    found = _occurrences(PRIVATE_ARGPARSE)
    assert found == []


def test_the_argparse_scan_would_see_a_private_name():
    planted = "a = parser._actions\nb = parser._option_string_actions['--x']\nc = x._actions_\n"
    assert sum(len(re.findall(p, planted)) for p in PRIVATE_ARGPARSE) == 2
