"""``Q``: the small list-query object that DomainBed analysis code uses over run records.

A selector is a function, a dotted key path into nested dicts (``"args.dataset"``) or a
comma-separated list of key paths (giving a tuple).
"""

import math
from typing import Any, Callable, Union

import numpy as np

Selector = Union[str, Callable[[Any], Any]]


def _dotted_getter(path: str) -> Callable[[Any], Any]:
    parts = path.split(".")

    def get(obj):
        for part in parts:
            obj = obj[part]
        return obj
    return get


def make_selector_fn(selector: Selector) -> Callable[[Any], Any]:
    if callable(selector):
        return selector
    if isinstance(selector, str):
        if "," in selector:
            getters = [_dotted_getter(s.strip()) for s in selector.split(",")]
            return lambda obj: tuple(g(obj) for g in getters)
        return _dotted_getter(selector)
    raise TypeError(f"a selector is a function or a key path, not {type(selector).__name__}")


def hashable(obj: Any) -> Any:
    """A hashable stand-in for ``obj`` (dicts and lists become tuples)."""
    if isinstance(obj, dict):
        return tuple(sorted((k, hashable(v)) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)):
        return tuple(hashable(v) for v in obj)
    return obj


class Q:
    """A list with query methods; most return a new ``Q``."""

    def __init__(self, list_):
        self._list = list(list_)

    def __len__(self):
        return len(self._list)

    def __getitem__(self, key):
        return self._list[key]

    def __iter__(self):
        return iter(self._list)

    def __eq__(self, other):
        if isinstance(other, Q):
            return self._list == other._list
        return self._list == other

    def __str__(self):
        return str(self._list)

    def __repr__(self):
        return repr(self._list)

    def _append(self, item):
        """Add an item in place (used while building groups)."""
        self._list.append(item)

    def group(self, selector: Selector) -> "Q":
        """Group by ``selector``: a ``Q`` of ``(key, Q(items))`` in first-seen order."""
        fn = make_selector_fn(selector)
        groups, order = {}, []
        for item in self._list:
            key = fn(item)
            hkey = hashable(key)
            if hkey not in groups:
                groups[hkey] = (key, Q([]))
                order.append(hkey)
            groups[hkey][1]._append(item)
        return Q([groups[k] for k in order])

    def group_map(self, selector: Selector, fn: Callable[[Any, "Q"], Any]) -> "Q":
        """Group, then apply ``fn(key, group)`` to each group."""
        return Q([fn(key, group) for key, group in self.group(selector)])

    def map(self, fn: Callable) -> "Q":
        """Apply ``fn``; tuples are unpacked into arguments."""
        def apply(item):
            return fn(*item) if isinstance(item, tuple) else fn(item)
        return Q([apply(item) for item in self._list])

    def select(self, selector: Selector) -> "Q":
        fn = make_selector_fn(selector)
        return Q([fn(item) for item in self._list])

    def min(self):
        return min(self._list)

    def max(self):
        return max(self._list)

    def sum(self):
        return sum(self._list)

    def len(self):
        return len(self._list)

    def mean(self):
        return float(np.mean(self._list))

    def std(self):
        return float(np.std(self._list))

    def mean_std(self):
        return self.mean(), self.std()

    def argmax(self, selector: Selector):
        fn = make_selector_fn(selector)
        return max(self._list, key=fn)

    def filter(self, fn: Callable[[Any], bool]) -> "Q":
        return Q([item for item in self._list if fn(item)])

    def filter_equals(self, selector: Selector, value: Any) -> "Q":
        fn = make_selector_fn(selector)
        return self.filter(lambda item: fn(item) == value)

    def filter_not_none(self) -> "Q":
        return self.filter(lambda item: item is not None)

    def filter_not_nan(self) -> "Q":
        return self.filter(lambda item: not (isinstance(item, float) and math.isnan(item)))

    def flatten(self) -> "Q":
        return Q([y for x in self._list for y in x])

    def unique(self) -> "Q":
        seen, result = set(), []
        for item in self._list:
            key = hashable(item)
            if key not in seen:
                seen.add(key)
                result.append(item)
        return Q(result)

    def sorted(self, key: Callable = None) -> "Q":
        key = key if key is not None else (lambda x: x)

        def sort_key(item):
            k = key(item)
            # NaN sorts first so that it never looks like a maximum
            return (0, 0) if isinstance(k, float) and math.isnan(k) else (1, k)
        return Q(sorted(self._list, key=sort_key))
