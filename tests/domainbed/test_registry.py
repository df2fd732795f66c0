"""``domainbed.registry.Registry``: the name index is read from source (nothing imported),
carries the declared metadata, and loads a module when its object is asked for."""

import sys
import textwrap

import pytest

from domainbed.registry import Registry, RegistryError


def _package(root, name, files):
    folder = root / name
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for module, text in files.items():
        (folder / f"{module}.py").write_text(textwrap.dedent(text))


def _registry(package, **kwargs):
    return Registry("widget", decorator="register_widget", search=[package],
                    fields={"colour": None, "sizes": ()}, **kwargs)


SHAPES = """
    from {package}.reg import register_widget
    LOADED = True

    @register_widget(colour="red", sizes=(1, 2))
    class Square:
        pass

    @register_widget("round_one")
    class Circle:
        pass
"""


@pytest.fixture
def widgets(tmp_path, monkeypatch):
    """A package ``wpkg``: ``reg`` holds the registry, ``shapes`` registers two widgets."""
    monkeypatch.syspath_prepend(str(tmp_path))
    _package(tmp_path, "wpkg", {
        "reg": """
            from domainbed.registry import Registry
            REGISTRY = Registry("widget", decorator="register_widget", search=["wpkg"],
                                fields={"colour": None, "sizes": ()})
            register_widget = REGISTRY.register
        """,
        "shapes": SHAPES.format(package="wpkg")})
    yield
    for name in [m for m in sys.modules if m == "wpkg" or m.startswith("wpkg.")]:
        del sys.modules[name]


def test_the_index_reads_names_and_metadata_without_importing(widgets):
    from wpkg.reg import REGISTRY
    entries = {e.name: e for e in REGISTRY.entries()}
    assert list(entries) == ["Square", "round_one"]
    assert entries["Square"].module == "wpkg.shapes"
    assert dict(entries["Square"].metadata) == {"colour": "red", "sizes": (1, 2)}
    assert REGISTRY.metadata("round_one") == {"colour": None, "sizes": ()}  # the defaults
    assert "Square" in REGISTRY and "Triangle" not in REGISTRY
    assert "wpkg.shapes" not in sys.modules  # read, not imported
    assert REGISTRY.loaded() == {}


def test_get_imports_the_defining_module_once(widgets):
    from wpkg.reg import REGISTRY
    square = REGISTRY.get("Square")
    assert square.__name__ == "Square" and sys.modules["wpkg.shapes"].LOADED
    assert REGISTRY["round_one"].__name__ == "Circle"
    assert set(REGISTRY.loaded()) == {"Square", "round_one"}


def test_an_unknown_name_fails_with_the_known_ones(widgets):
    from wpkg.reg import REGISTRY
    with pytest.raises(KeyError, match="unknown widget 'Hexagon'; known widgets: Square, "
                                       "round_one"):
        REGISTRY.get("Hexagon")


def test_a_name_registered_at_run_time_is_listed_after_the_index_and_can_be_forgotten(
        widgets):
    from wpkg.reg import REGISTRY

    @REGISTRY.register("toy", colour="blue")
    class Toy:
        pass

    assert REGISTRY.names() == ["Square", "round_one", "toy"]
    assert REGISTRY.metadata("toy") == {"colour": "blue", "sizes": ()}
    assert REGISTRY.get("toy") is Toy
    REGISTRY.unregister("toy")
    assert "toy" not in REGISTRY and REGISTRY.names() == ["Square", "round_one"]


def test_registrations_the_index_cannot_trust_are_errors(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _package(tmp_path, "badargs", {"a": """
        WIDTH = 3
        @register_widget(sizes=(WIDTH,))
        class Wide: pass
    """})
    with pytest.raises(RegistryError, match="as literals"):
        _registry("badargs").index()
    _package(tmp_path, "badkey", {"a": """
        @register_widget(weight=3)
        class Heavy: pass
    """})
    with pytest.raises(RegistryError, match="unknown metadata 'weight'; known: colour, sizes"):
        _registry("badkey").index()
    _package(tmp_path, "twice", {"a": "@register_widget()\nclass W: pass\n",
                                 "b": "@register_widget('W')\nclass Other: pass\n"})
    with pytest.raises(RegistryError, match="'W' is registered twice: in twice.a and in "
                                            "twice.b"):
        _registry("twice").index()


def test_a_registration_that_differs_from_the_index_is_an_error(widgets):
    from wpkg.reg import REGISTRY
    REGISTRY.index()
    with pytest.raises(RegistryError, match="differs from what the index read"):
        class Square:  # noqa: F811  (the indexed name, other metadata, same module name)
            pass
        Square.__module__ = "wpkg.shapes"
        REGISTRY.register("Square", colour="green")(Square)


def test_a_marker_registry_indexes_the_modules_that_mention_it(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _package(tmp_path, "rows", {
        "reg": """
            from domainbed.registry import Registry
            ROWS = Registry("row", marker="Row(", search=["rows"])
            FOUND = []
            def Row(name):
                FOUND.append(name)
        """,
        "first": "from rows.reg import Row\nfor n in ('a', 'b'):\n    Row(n)\n",
        "other": "X = 1\n"})
    try:
        from rows.reg import FOUND, ROWS
        assert "rows.first" not in sys.modules
        ROWS.load()
        assert FOUND == ["a", "b"] and "rows.other" not in sys.modules
    finally:
        for name in [m for m in sys.modules if m == "rows" or m.startswith("rows.")]:
            del sys.modules[name]


def test_a_search_asked_for_a_kind_before_its_registry_exists_is_applied_when_it_is_made(
        tmp_path, monkeypatch):
    from domainbed import registry as registry_module
    monkeypatch.setattr(registry_module, "_BY_KIND", {})
    monkeypatch.setattr(registry_module, "_PENDING_SEARCH", {})
    monkeypatch.syspath_prepend(str(tmp_path))
    _package(tmp_path, "early", {"a": "@register_widget()\nclass Early: pass\n"})
    _package(tmp_path, "late", {"a": "@register_widget()\nclass Late: pass\n"})
    registry_module.search("gadget", "early")  # no gadget registry yet
    gadgets = Registry("gadget", decorator="register_widget")
    assert gadgets.names() == ["Early"]
    registry_module.search("gadget", "late")  # the registry exists now: added at once
    assert gadgets.names() == ["Early", "Late"]
