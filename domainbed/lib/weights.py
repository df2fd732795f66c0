"""Safe weight files: we write safetensors with JSON metadata; we never unpickle code.

``save_state`` / ``load_state`` store any nested structure of tensors, numbers, strings,
lists, tuples, dicts and numpy arrays (optimiser states, RNG states) in one safetensors
file: tensors go to the tensor table, the rest to a JSON skeleton in the metadata.
Foreign torch pickles (e.g. upstream's ``model.pkl``) are read with ``weights_only=True``.
Every load maps tensors to the requested device.
"""

import json
import os
import pickle
import struct
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from domainbed.errors import WeightFileError, one_line
from domainbed.lib.misc import atomic_write_bytes

_META_KEY = "domainbed"
_SKELETON_KEY = "domainbed_skeleton"
_ALIASES_KEY = "domainbed_aliases"


def _flatten(obj: Any, tensors: Dict[str, torch.Tensor], seen: Optional[dict] = None) -> Any:
    seen = {} if seen is None else seen
    if isinstance(obj, torch.Tensor):
        ident = (obj.data_ptr(), obj.shape, obj.stride(), obj.dtype) if obj.numel() else None
        if ident is not None and ident in seen:  # an alias of a tensor already stored
            return {"__tensor__": seen[ident]}
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        if ident is not None:
            seen[ident] = key
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        # keys may be ints (optimiser states): keep their type
        return {"__dict__": [[_flatten(k, tensors, seen), _flatten(v, tensors, seen)]
                             for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, tensors, seen) for v in obj]}
    if isinstance(obj, list):
        return [_flatten(v, tensors, seen) for v in obj]
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return {"__float__": repr(obj)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a weight file")


def _unflatten(obj: Any, tensors: Dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return np.array(obj["__ndarray__"], dtype=obj["dtype"])
        if "__dict__" in obj:
            return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        if "__float__" in obj:
            return float(obj["__float__"])
    return obj


def _dedupe(state_dict: Dict[str, torch.Tensor]):
    """Drop names that alias an earlier tensor (e.g. ``network.0.*`` = ``featurizer.*``)."""
    seen, tensors, aliases = {}, {}, {}
    for key, value in state_dict.items():
        ident = (value.data_ptr(), value.shape, value.stride(), value.dtype) \
            if value.numel() else None
        if ident is not None and ident in seen:
            aliases[key] = seen[ident]
            continue
        if ident is not None:
            seen[ident] = key
        tensors[key] = value.detach().to("cpu").contiguous().clone()
    return tensors, aliases


def weights_bytes(state_dict: Dict[str, torch.Tensor],
                  metadata: Optional[Dict[str, Any]] = None) -> bytes:
    """The bytes :func:`save_weights` writes for ``state_dict`` and ``metadata`` (so a
    file's hash can be known without writing it)."""
    from safetensors.torch import save
    tensors, aliases = _dedupe(state_dict)
    meta = {_META_KEY: json.dumps(metadata or {}, sort_keys=True)}
    if aliases:
        meta[_ALIASES_KEY] = json.dumps(aliases, sort_keys=True)
    return _sorted_metadata(save(tensors, metadata=meta))


def _sorted_metadata(data: bytes) -> bytes:
    """``data`` with the header's metadata keys in sorted order: safetensors writes them in
    a per-process random order, so a file with two keys (metadata and aliases) would not be
    byte-reproducible. The header is compact JSON padded with spaces to a multiple of 8
    bytes; when re-serialising it does not give back exactly the bytes safetensors wrote,
    ``data`` is returned unchanged."""
    (n,) = struct.unpack("<Q", data[:8])
    header = data[8:8 + n]
    parsed = json.loads(header)
    meta = parsed.get("__metadata__")
    if not meta or len(meta) < 2 or _padded(parsed) != header:
        return data
    parsed["__metadata__"] = dict(sorted(meta.items()))
    fixed = _padded(parsed)
    if len(fixed) != n:
        return data
    return data[:8] + fixed + data[8 + n:]


def _padded(header: Dict[str, Any]) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return text + b" " * (-len(text) % 8)


def save_weights(path: str, state_dict: Dict[str, torch.Tensor],
                 metadata: Optional[Dict[str, Any]] = None) -> None:
    """Write a flat ``name -> tensor`` dict as safetensors, atomically, with JSON metadata.

    Names that alias another tensor are stored once and restored by :func:`load_file`.
    """
    atomic_write_bytes(path, weights_bytes(state_dict, metadata))


def read_metadata(path: str) -> Dict[str, Any]:
    """The JSON metadata of a safetensors file we wrote, without reading its tensors."""
    from safetensors import safe_open
    _check_is_file(path)
    if _file_kind(path) != "safetensors":
        return {}
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            return _json_metadata(path, (f.metadata() or {}).get(_META_KEY, "{}"))
    except WeightFileError:
        raise
    except Exception as exc:  # safetensors raises its own error types
        raise WeightFileError(f"{path}: not a readable safetensors file ({one_line(exc)}); "
                              "it is truncated or corrupt: re-create or re-download it") from None


def _check_is_file(path: str) -> None:
    if os.path.isdir(path):
        raise WeightFileError(f"{path}: is a folder, not a weight file; give the file (e.g. "
                              "RUN/model.safetensors)")
    if not os.path.isfile(path):
        raise WeightFileError(f"{path}: no such weight file")


def _json_metadata(path: str, text: str) -> Dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise WeightFileError(f"{path}: its metadata is not valid JSON ({exc}); the file was "
                              "altered: re-create or re-download it") from None
    if not isinstance(value, dict):
        raise WeightFileError(f"{path}: its metadata is not a JSON object; the file was "
                              "altered: re-create or re-download it")
    return value


def save_state(path: str, state: Any, metadata: Optional[Dict[str, Any]] = None) -> None:
    """Write any nested structure of tensors and plain values (see module docstring)."""
    from safetensors.torch import save
    tensors: Dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, tensors)
    meta = {_META_KEY: json.dumps(metadata or {}, sort_keys=True),
            _SKELETON_KEY: json.dumps(skeleton)}
    atomic_write_bytes(path, save(tensors, metadata=meta))


def _file_kind(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors first: its 8-byte header length may start with any byte, 0x80 included
    if len(head) == 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n < os.path.getsize(path):
            return "safetensors"
    if head[:2] == b"PK":
        return "torch-zip"
    if head[:1] == b"\x80":
        return "pickle"
    return "unknown"


def _read_safetensors(path: str, device) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    from safetensors import safe_open
    tensors = {}
    try:
        with safe_open(path, framework="pt", device=str(device)) as f:
            meta = f.metadata() or {}
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except Exception as exc:  # safetensors raises its own error types
        raise WeightFileError(f"{path}: not a readable safetensors file ({one_line(exc)}); "
                              "it is truncated or corrupt: re-create or re-download it") from None
    return tensors, meta


def _read_torch_pickle(path: str, device) -> Any:
    try:
        if path.endswith(".safetensors"):  # torch.load would hand it to safetensors
            with open(path, "rb") as f:
                return torch.load(f, map_location=device, weights_only=True)
        return torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as exc:
        first = one_line(exc, last=False)
        if isinstance(exc, RuntimeError) and ("PytorchStreamReader" in first or "zip" in first):
            raise WeightFileError(f"{path}: not a readable torch file ({first}); it is "
                                  "truncated or corrupt: re-create or re-download it") from None
        raise WeightFileError(
            f"{path}: refused to load: the file holds Python objects or code that a weight "
            f"file must not contain ({first}). Only plain tensors and containers are read "
            "(torch.load with weights_only=True); re-save the weights as a state dict or as "
            "safetensors") from None
    except Exception as exc:  # truncated zip or pickle streams raise many kinds
        raise WeightFileError(f"{path}: not a readable torch file ({type(exc).__name__}: "
                              f"{one_line(exc, last=False)}); it is truncated or corrupt: "
                              "re-create or re-download it") from None


def load_file(path: str, device="cpu") -> Tuple[Any, Dict[str, Any]]:
    """Load a weight file of any supported kind; returns ``(content, metadata)``.

    safetensors files written by :func:`save_state` give back the nested structure, others
    a flat tensor dict; torch pickles give whatever (safe) structure they hold.
    """
    _check_is_file(path)
    kind = _file_kind(path)
    if kind == "safetensors":
        tensors, meta = _read_safetensors(path, device)
        metadata = _json_metadata(path, meta.get(_META_KEY, "{}"))
        if _SKELETON_KEY in meta:
            try:
                return _unflatten(json.loads(meta[_SKELETON_KEY]), tensors), metadata
            except (ValueError, KeyError, TypeError) as exc:
                raise WeightFileError(f"{path}: its structure metadata is broken "
                                      f"({type(exc).__name__}: {exc}); the file was altered: "
                                      "re-create it") from None
        if _ALIASES_KEY in meta:
            aliases = json.loads(meta[_ALIASES_KEY])
            tensors = _restore_aliases(tensors, aliases)
        return tensors, metadata
    if kind in ("torch-zip", "pickle"):
        return _read_torch_pickle(path, device), {}
    raise WeightFileError(f"{path}: unknown weight file format (expected safetensors or a "
                          "torch state dict); if it is one, it is truncated or corrupt: "
                          "re-create or re-download it")


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
                       "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32,
                       "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                       "BOOL": torch.bool}


class TensorFile:
    """A flat safetensors weight file read one tensor (or one slice of one) at a time.

    Tensors are read with plain file reads into fresh CPU tensors, never through a memory
    map, so what a caller holds is all the file costs in memory: streaming a file tensor by
    tensor keeps one tensor resident. ``keys()`` lists names as :func:`load_file` returns
    them (aliases written by :func:`save_weights` after the stored tensors). Files with a
    nested structure (:func:`save_state`) or in another format are refused: use
    :func:`load_file` for those.
    """

    def __init__(self, path: str):
        _check_is_file(path)
        if _file_kind(path) != "safetensors":
            raise WeightFileError(f"{path}: not a safetensors file; only safetensors files "
                                  "are read tensor by tensor (load_file reads the others)")
        self.path = path
        self._file = open(path, "rb")
        try:
            (n,) = struct.unpack("<Q", self._file.read(8))
            header = json.loads(self._file.read(n))
        except (ValueError, struct.error) as exc:
            self._file.close()
            raise WeightFileError(f"{path}: not a readable safetensors file ({exc}); it is "
                                  "truncated or corrupt: re-create or re-download it") from None
        self._start = 8 + n
        meta = header.pop("__metadata__", None) or {}
        if _SKELETON_KEY in meta:
            self._file.close()
            raise WeightFileError(f"{path}: holds a nested structure, not a flat state dict")
        self.metadata = _json_metadata(path, meta.get(_META_KEY, "{}"))
        self._index: Dict[str, Tuple[torch.dtype, Tuple[int, ...], int, int]] = {}
        for key, entry in header.items():
            dtype = _SAFETENSORS_DTYPES.get(entry.get("dtype"))
            if dtype is None:
                self._file.close()
                raise WeightFileError(f"{path}: tensor {key!r} has unsupported dtype "
                                      f"{entry.get('dtype')!r}")
            begin, end = entry["data_offsets"]
            self._index[key] = (dtype, tuple(entry["shape"]), int(begin), int(end))
        self.aliases: Dict[str, str] = dict(json.loads(meta[_ALIASES_KEY])) \
            if _ALIASES_KEY in meta else {}

    def keys(self):
        # the order of load_file: stored names sorted (as safetensors lists them), then aliases
        return sorted(self._index) + [a for a in self.aliases if a not in self._index]

    def canonical(self, key: str) -> str:
        """The stored tensor an alias names (the key itself when it is stored)."""
        return self.aliases.get(key, key) if key not in self._index else key

    def layout(self, key: str) -> Tuple[Tuple[int, ...], torch.dtype]:
        dtype, shape, _, _ = self._index[self.canonical(key)]
        return shape, dtype

    def get(self, key: str) -> torch.Tensor:
        """A fresh CPU tensor holding ``key``."""
        dtype, shape, begin, end = self._index[self.canonical(key)]
        numel = 1
        for size in shape:
            numel *= size
        return self._read(dtype, begin, end - begin, numel).reshape(shape)

    def get_flat(self, key: str, start: int, stop: int) -> torch.Tensor:
        """Elements ``start:stop`` of ``key`` flattened (row-major), as a fresh 1-D tensor."""
        dtype, shape, begin, _ = self._index[self.canonical(key)]
        size = torch.empty(0, dtype=dtype).element_size()
        return self._read(dtype, begin + start * size, (stop - start) * size, stop - start)

    def _read(self, dtype, offset: int, nbytes: int, numel: int) -> torch.Tensor:
        buffer = torch.empty(nbytes, dtype=torch.uint8)
        if nbytes:
            self._file.seek(self._start + offset)
            got = self._file.readinto(buffer.numpy())
            if got != nbytes:
                raise WeightFileError(f"{self.path}: truncated (a tensor is cut short); "
                                      "re-create or re-download it")
        return buffer.view(dtype) if numel else torch.empty(0, dtype=dtype)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "TensorFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _restore_aliases(tensors: Dict[str, torch.Tensor], aliases: Dict[str, str]):
    return {**tensors, **{alias: tensors[canonical] for alias, canonical in aliases.items()}}


def load_state(path: str, device="cpu") -> Tuple[Any, Dict[str, Any]]:
    """Alias of :func:`load_file` for files written by :func:`save_state`."""
    return load_file(path, device)


def extract_state_dict(content: Any) -> Dict[str, torch.Tensor]:
    """Find the model state dict in a loaded file (ours, upstream's ``model.pkl``, a raw one)."""
    if isinstance(content, dict):
        for key in ("model_dict", "state_dict", "model"):
            if key in content and isinstance(content[key], dict):
                return content[key]
        if all(isinstance(v, torch.Tensor) for v in content.values()):
            return content
    raise WeightFileError("the weight file holds no model state dict "
                          "(expected keys 'model_dict' or 'state_dict', or a flat tensor dict)")
