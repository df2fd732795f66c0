"""Name -> object registries, each name declared once, where the thing is defined.

A ``Registry`` maps names to implementations (algorithm classes, dataset classes, launchers,
...). Registries of the kinds that commands must list without importing torch also keep an
*index*: name -> where the thing is defined and the metadata consumers need (an algorithm's
init kind and report family, a dataset's environments, a launcher's capabilities). The
index is read from the source of the modules the registry searches, without executing them:
a registration is a decorator with literal arguments on a top-level class or function::

    @register_algorithm(init="pool", family="inter")
    class Ratatouille(InterTraining): ...

The index finds it by reading ``domainbed_aux/algorithms.py`` (no torch); ``get("Ratatouille")``
imports that module, whose decorator registers the class. Extensions add modules to a
registry's search from their torch-free entry point (``domainbed.sweep_plugins``), so that
their names are indexed like the core's: ``registry.search(...)``, or ``search(kind, ...)``
here for a registry whose package imports torch. A registry with a ``marker`` instead indexes the
modules whose source mentions it and loads them all when its names are asked for (rows of a
table registered in loops, where no name is a literal).

Unknown names fail with the known ones listed.
"""

import ast
import importlib
import importlib.machinery
import importlib.util
import os
from dataclasses import dataclass, field
from typing import (Any, Callable, Dict, Generic, Iterator, List, Mapping, Optional,
                    Sequence, Tuple, TypeVar)

T = TypeVar("T")


class RegistryError(ValueError):
    """A registration the index cannot read, or that contradicts it."""


@dataclass(frozen=True)
class Entry:
    """One indexed name: the module that defines it and its metadata."""

    name: str
    module: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ reading source files

def _locate(module: str) -> Optional[Tuple[str, bool]]:
    """(source file, is a package) of a dotted module: the top-level package as the import
    system finds it (an editable install included), the rest by path, so that no package
    ``__init__`` runs (``importlib.util.find_spec`` would import the parents)."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    for part in rest:
        if spec is None or spec.submodule_search_locations is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(part, spec.submodule_search_locations)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return spec.origin, spec.submodule_search_locations is not None


def module_files(module: str) -> List[Tuple[str, str]]:
    """(module name, source file) of ``module`` and, for a package, of every module under
    it: the package's ``__init__`` first, then its entries by name, depth first."""
    found = _locate(module)
    if found is None:
        return []
    path, is_package = found
    if not is_package:
        return [(module, path)]
    return _package_files(module, os.path.dirname(path))


def _package_files(package: str, folder: str) -> List[Tuple[str, str]]:
    out = [(package, os.path.join(folder, "__init__.py"))]
    for name in sorted(os.listdir(folder)):
        full = os.path.join(folder, name)
        if name.endswith(".py") and not name.startswith("__"):
            out.append((f"{package}.{name[:-3]}", full))
        elif os.path.isfile(os.path.join(full, "__init__.py")) and name.isidentifier():
            out.extend(_package_files(f"{package}.{name}", full))
    return out


def _callee(node: ast.AST) -> Optional[str]:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _literal(node: ast.AST, where: str) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise RegistryError(f"{where}: write the registration's arguments as literals, so that "
                            "the name index can read them without importing the module") from None


_PARSED: Dict[Tuple[str, str, float], List[Tuple[str, Dict[str, Any]]]] = {}


def declarations(path: str, decorator: str) -> List[Tuple[str, Dict[str, Any]]]:
    """(name, metadata) of every top-level class or function of ``path`` decorated with
    ``@decorator(...)`` (the name: the decorator's first argument or ``name=``, else the
    definition's own), in source order."""
    try:
        mtime = os.path.getmtime(path)
    except OSError:
        return []
    key = (path, decorator, mtime)
    if key in _PARSED:
        return _PARSED[key]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    found: List[Tuple[str, Dict[str, Any]]] = []
    if decorator in text:
        for node in ast.parse(text, path).body:
            if not isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for dec in node.decorator_list:
                if not (isinstance(dec, ast.Call) and _callee(dec.func) == decorator):
                    continue
                where = f"{path}:{dec.lineno}"
                metadata = {kw.arg: _literal(kw.value, where) for kw in dec.keywords}
                name = _literal(dec.args[0], where) if dec.args else None
                name = metadata.pop("name", name) or node.name
                found.append((name, metadata))
    _PARSED[key] = found
    return found


def mentions(path: str, marker: str) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return marker in f.read()
    except OSError:
        return False


# ------------------------------------------------------------------------ the registry

# the registries ``python -m domainbed.scripts.names`` lists, by the plural it shows
LISTED: Dict[str, "Registry"] = {}
# every registry by kind, and the searches asked for a kind before its registry existed
_BY_KIND: Dict[str, "Registry"] = {}
_PENDING_SEARCH: Dict[str, List[str]] = {}


def search(kind: str, *modules: str) -> None:
    """Index ``modules`` in the registry of ``kind`` (e.g. ``"Table-1 row"``) too, whether
    or not the module that defines that registry was imported: an extension's torch-free
    entry point adds its packages to a registry whose own package imports torch."""
    registry = _BY_KIND.get(kind)
    if registry is not None:
        registry.search(*modules)
    else:
        _PENDING_SEARCH.setdefault(kind, []).extend(modules)


class Registry(Generic[T]):
    """An ordered name -> object mapping, with an optional torch-free index.

    ``decorator`` names the registration decorator the index reads in the ``search``ed
    modules; ``fields`` the metadata keys a registration may give, with their defaults;
    ``marker`` (instead of ``decorator``): index the modules whose source holds it, and
    load them for the names. ``extensible``: extensions' torch-free entry points are loaded
    before the index is read (they add to ``search``), and ``get`` of an unknown name loads
    the full extensions before it fails. Without ``search`` a registry holds what was
    registered. ``listed_as``: the plural under which ``domainbed.scripts.names`` lists it.
    """

    def __init__(self, kind: str, decorator: Optional[str] = None,
                 fields: Optional[Mapping[str, Any]] = None, search: Sequence[str] = (),
                 marker: Optional[str] = None, extensible: bool = False,
                 on_register: Optional[Callable[[Any, Entry], None]] = None,
                 listed_as: Optional[str] = None):
        self.kind = kind
        self.decorator = decorator
        self.marker = marker
        self.fields = dict(fields or {})
        self.extensible = extensible
        self.on_register = on_register
        self._search: List[str] = list(search)
        self._items: Dict[str, T] = {}
        self._runtime: Dict[str, Entry] = {}  # registered, not found in the index
        self._index: Optional[Dict[str, Entry]] = None
        self._marked: List[str] = []
        if listed_as:
            LISTED[listed_as] = self
        _BY_KIND[kind] = self
        self.search(*_PENDING_SEARCH.pop(kind, []))

    # -- the index
    def search(self, *modules: str) -> None:
        """Index these modules (packages: every module under them) too."""
        for module in modules:
            if module not in self._search:
                self._search.append(module)
        self._index = None

    def _load_extensions(self, full: bool = False) -> None:
        if self.extensible:
            from domainbed.plugins import PLUGINS, SWEEP_PLUGINS, load_plugins
            load_plugins(PLUGINS if full else SWEEP_PLUGINS)

    def index(self, extensions: bool = True) -> Dict[str, Entry]:
        """The indexed names (read from source, nothing imported), in search order; with
        ``extensions`` False, without loading the extensions' torch-free entry points first
        (what is indexed so far: the core's names, and any extension already loaded)."""
        if extensions:
            self._load_extensions()
        if self._index is None:
            index: Dict[str, Entry] = {}
            marked: List[str] = []
            for searched in self._search:
                for module, path in module_files(searched):
                    if self.marker is not None:
                        if mentions(path, self.marker) and module not in marked:
                            marked.append(module)
                        continue
                    for name, metadata in declarations(path, self.decorator or ""):
                        entry = Entry(name, module, self._complete(name, metadata, path))
                        other = index.setdefault(name, entry)
                        if other.module != module:
                            raise RegistryError(f"{self.kind} {name!r} is registered twice: "
                                                f"in {other.module} and in {module}")
            self._index, self._marked = index, marked
        return self._index

    def _complete(self, name: str, metadata: Mapping[str, Any], where: str) -> Dict[str, Any]:
        unknown = [k for k in metadata if k not in self.fields]
        if unknown:
            raise RegistryError(f"{where}: {self.kind} {name!r}: unknown metadata "
                                f"{unknown[0]!r}; known: {', '.join(self.fields) or 'none'}")
        return dict(self.fields, **metadata)

    def _load_marked(self) -> None:
        self.index()
        for module in self._marked:
            importlib.import_module(module)

    def load(self) -> None:
        """Import every module the index names (so that everything is registered)."""
        self._load_marked()
        for entry in self.index().values():
            importlib.import_module(entry.module)

    def entries(self) -> List[Entry]:
        """Every name with its module and metadata: the index's, then the names registered
        at run time only (nothing is imported, but for a ``marker`` registry)."""
        if self.marker is not None:
            self._load_marked()
        index = self.index()
        return list(index.values()) + [self._runtime_entry(n) for n in self._items
                                       if n not in index]

    def _runtime_entry(self, name: str) -> Entry:
        entry = self._runtime.get(name)
        if entry is None:
            obj = self._items[name]
            module = getattr(obj, "__module__", None) or type(obj).__module__
            entry = Entry(name, module, dict(self.fields))
        return entry

    def entry(self, name: str) -> Entry:
        for entry in self.entries():
            if entry.name == name:
                return entry
        raise KeyError(self._unknown(name))

    def metadata(self, name: str) -> Dict[str, Any]:
        """The metadata of ``name`` (every field, defaults filled in), without loading it."""
        return dict(self.entry(name).metadata)

    def names(self) -> List[str]:
        return [e.name for e in self.entries()]

    def names_in_order(self, first: Sequence[str]) -> List[str]:
        """The names, those of ``first`` (e.g. upstream's list) first and in its order, then
        the others in index order."""
        registered = self.names()
        known = set(registered)
        return [n for n in first if n in known] + [n for n in registered if n not in first]

    # -- registration and loading
    def register(self, name: Optional[str] = None, **metadata: Any) -> Callable[[T], T]:
        """Decorator: register the object under ``name`` (default: its ``__name__``) with
        ``metadata`` (keys of ``fields``)."""
        def decorator(obj: T) -> T:
            key = name or obj.__name__
            if key in self._items and self._items[key] is not obj:
                raise RegistryError(f"{self.kind} {key!r} is registered twice")
            module = getattr(obj, "__module__", None) or type(obj).__module__
            entry = Entry(key, module, self._complete(key, metadata, module))
            indexed = (self._index or {}).get(key)
            if indexed is not None and indexed.module == module and \
                    dict(indexed.metadata) != dict(entry.metadata):
                raise RegistryError(f"{self.kind} {key!r}: its registration in {module} "
                                    "differs from what the index read")
            self._items[key] = obj
            if indexed is None:
                self._runtime[key] = entry
            if self.on_register is not None:
                self.on_register(obj, entry)
            return obj
        return decorator

    def unregister(self, name: str) -> None:
        """Forget what was registered as ``name`` at run time (a test's or a plugin's toy);
        indexed names stay in the index."""
        self._items.pop(name, None)
        self._runtime.pop(name, None)

    def get(self, name: str) -> T:
        """The object registered as ``name``, its module imported when needed."""
        if name in self._items:
            return self._items[name]
        # the core's index first: a core name loads no extension
        entry = self.index(extensions=False).get(name) or self.index().get(name)
        if entry is None and self.marker is not None:
            self._load_marked()
        if entry is None and name not in self._items:
            self._load_extensions(full=True)
            entry = self.index().get(name)
        if entry is not None and name not in self._items:
            importlib.import_module(entry.module)
        if name not in self._items:
            raise KeyError(self._unknown(name))
        return self._items[name]

    def _unknown(self, name: str) -> str:
        known = list(dict.fromkeys(list(self.index()) + list(self._items)))
        return f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(known)}"

    def __getitem__(self, name: str) -> T:  # upstream style: REGISTRY[name]
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        if name in self._items:
            return True
        if self.decorator is None:
            return False
        # the core's names first: asking for one loads no extension (predict on a core
        # dataset imports nothing from domainbed_aux)
        return name in self.index(extensions=False) or name in self.index()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def loaded(self) -> Dict[str, T]:
        """The objects registered so far (nothing imported)."""
        return dict(self._items)
