"""Weights read one tensor at a time: members and the base weights theta_0.

A member (a weight-file path, a state dict, an ``nn.Module`` or a function returning a state
dict; see :mod:`domainbed_aux.averaging.base`) is opened as :class:`Weights`. A safetensors
file is read tensor by tensor from disk (:class:`domainbed.lib.weights.TensorFile`), so a
rule that streams holds its accumulators and one tensor, never a whole member; other
sources are loaded whole. Names that alias one tensor (``featurizer.*`` and ``network.0.*``
in our models) are read, and merged, once.

theta_0 is the members' common ancestor: for our runs the shared linear probe
``(w_lp, phi_pt)``, a file with ``featurizer.*`` and ``classifier.*`` that
:class:`BaseWeights` maps onto every name the members use for those parts.
"""

import os
from typing import Dict, List, Mapping, Optional, Tuple

import torch

from domainbed.lib.weights import TensorFile, extract_state_dict, load_file
from domainbed_aux.averaging.base import AveragingError, MemberSource, load_member
from domainbed_aux.parts import PART_PREFIXES

Layout = Dict[str, Tuple[Tuple[int, ...], torch.dtype]]


class Weights:
    """One set of weights: ``keys()``, ``layout()``, ``canonical(key)`` (the name an alias
    stands for) and ``get(key)`` (a tensor the caller must not modify in place)."""

    def keys(self) -> List[str]:
        raise NotImplementedError

    def layout(self) -> Layout:
        raise NotImplementedError

    def canonical(self, key: str) -> str:
        return key

    def get(self, key: str) -> torch.Tensor:
        raise NotImplementedError

    def get_flat(self, key: str, start: int, stop: int) -> torch.Tensor:
        """Elements ``start:stop`` of ``key`` flattened."""
        return self.get(key).reshape(-1)[start:stop]

    def close(self) -> None:
        pass


class DictWeights(Weights):
    """A state dict in memory; keys holding the very same tensor are aliases of the first."""

    def __init__(self, state: Mapping[str, torch.Tensor]):
        self.state = dict(state)
        self._canonical: Dict[str, str] = {}
        seen: Dict[tuple, str] = {}
        for key, value in self.state.items():
            ident = (value.data_ptr(), tuple(value.shape), value.stride(), value.dtype) \
                if value.numel() else None
            if ident is not None and ident in seen:
                self._canonical[key] = seen[ident]
            elif ident is not None:
                seen[ident] = key

    def keys(self) -> List[str]:
        return list(self.state)

    def layout(self) -> Layout:
        return {k: (tuple(v.shape), v.dtype) for k, v in self.state.items()}

    def canonical(self, key: str) -> str:
        return self._canonical.get(key, key)

    def get(self, key: str) -> torch.Tensor:
        return self.state[key].detach()


class FileWeights(Weights):
    """A flat safetensors file, read tensor by tensor (plain reads, no memory map)."""

    def __init__(self, path: str):
        self.file = TensorFile(path)
        self._keys = self.file.keys()

    def keys(self) -> List[str]:
        return list(self._keys)

    def layout(self) -> Layout:
        return {k: self.file.layout(k) for k in self._keys}

    def canonical(self, key: str) -> str:
        return self.file.canonical(key)

    def get(self, key: str) -> torch.Tensor:
        return self.file.get(key)

    def get_flat(self, key: str, start: int, stop: int) -> torch.Tensor:
        return self.file.get_flat(key, start, stop)

    def close(self) -> None:
        self.file.close()


def _streamable(path: str) -> bool:
    try:
        TensorFile(path).close()
        return True
    except Exception:  # another format (torch pickle, nested structure): loaded whole
        return False


def open_weights(source, member_id: str = "member") -> Weights:
    """:class:`Weights` of a member source (a ``Weights`` is returned as it is)."""
    if isinstance(source, Weights):
        return source
    if isinstance(source, (str, os.PathLike)) and _streamable(os.fspath(source)):
        return FileWeights(os.fspath(source))
    return DictWeights(load_member(source, member_id))


def part_of(key: str) -> Optional[Tuple[str, str]]:
    """``(part, inner key)`` of a model key (``featurizer.x``, ``network.0.x``, ...)."""
    for part, prefixes in PART_PREFIXES.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                return part, key[len(prefix):]
    return None


class BaseWeights(Weights):
    """theta_0 seen through the members' names.

    ``source`` holds either the members' own keys (a state dict or file of the same model)
    or only ``featurizer.*`` / ``classifier.*`` (the linear probe, an init file): each member
    key is then found under its part's name. ``has(key)`` says whether theta_0 holds a key;
    a shape that differs from the members' is an error.
    """

    def __init__(self, source, member_layout: Layout, what: str = "theta_0"):
        self.inner = open_weights(source, what)
        self.what = what
        inner_layout = self.inner.layout()
        self.map: Dict[str, str] = {}
        for key, (shape, _) in member_layout.items():
            found = key if key in inner_layout else None
            if found is None:
                part = part_of(key)
                candidate = f"{part[0]}.{part[1]}" if part else None
                found = candidate if candidate in inner_layout else None
            if found is None:
                continue
            if tuple(inner_layout[found][0]) != tuple(shape):
                raise AveragingError(
                    f"{what}: {found!r} has shape {tuple(inner_layout[found][0])} but the "
                    f"members' {key!r} has {tuple(shape)}; theta_0 must be the ancestor of "
                    "the members (the same architecture and number of classes)")
            self.map[key] = found
        if not self.map:
            raise AveragingError(f"{what} shares no weight with the members (keys "
                                 f"{sorted(inner_layout)[:3]}...); give their common ancestor")
        self._layout = {k: inner_layout[v] for k, v in self.map.items()}

    def has(self, key: str) -> bool:
        return key in self.map

    def keys(self) -> List[str]:
        return list(self.map)

    def layout(self) -> Layout:
        return dict(self._layout)

    def get(self, key: str) -> torch.Tensor:
        return self.inner.get(self.map[key])

    def get_flat(self, key: str, start: int, stop: int) -> torch.Tensor:
        return self.inner.get_flat(self.map[key], start, stop)

    def close(self) -> None:
        self.inner.close()


def load_weights(source) -> Dict[str, torch.Tensor]:
    """A whole state dict from any member source (for small, in-memory uses)."""
    if isinstance(source, Weights):
        return {k: source.get(k) for k in source.keys()}
    if isinstance(source, (str, os.PathLike)):
        content, _ = load_file(os.fspath(source), device="cpu")
        return dict(extract_state_dict(content))
    return load_member(source, "member")


__all__ = ["Weights", "DictWeights", "FileWeights", "BaseWeights", "open_weights",
           "load_weights", "part_of", "Layout", "MemberSource"]
