"""Layering rules, read from the source (imports inside functions included):

- the launchers import nothing from ``scripts/`` (a job reaches them as a typed call or a
  rendered command, never as "our own command line" to recognise);
- only ``scripts/``, the argv rendering (``sweep/jobs.py``) and upstream's job format
  (``sweep/upstream.py``) name the training command's module: nothing else builds, scans or
  parses a training command line;
- no code compares a launcher's name with a string: what a backend can do is a declared
  capability.
"""

import ast

from tests.fixtures.paths import package_sources

TRAIN_MODULE = "domainbed.scripts.train"
LAUNCHER_NAMES = {"local", "slurm", "dummy", "multi_gpu"}
RENDERING = {"domainbed/sweep/jobs.py", "domainbed/sweep/upstream.py"}


def _modules():
    for path, text in package_sources():
        yield path, ast.parse(text, path)


def _imported(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


def _code_strings(tree):
    """String constants that are not docstrings."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and \
                    isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                id(node) not in docstrings:
            yield node


def _names_the_command(text: str) -> bool:
    """The module as a command's word, or a command line that runs it (an error message
    that mentions the script is neither)."""
    return text == TRAIN_MODULE or f"-m {TRAIN_MODULE}" in text


def test_the_launchers_import_nothing_from_scripts():
    found = [(path, name) for path, tree in _modules()
             if path.startswith("domainbed/command_launchers/")
             for name in _imported(tree) if name.startswith("domainbed.scripts")]
    assert found == []


def test_only_the_scripts_and_the_rendering_name_the_training_command():
    found = [(path, node.lineno) for path, tree in _modules()
             if not path.startswith(("domainbed/scripts/", "domainbed_aux/scripts/"))
             and path not in RENDERING
             for node in _code_strings(tree) if _names_the_command(node.value)]
    assert found == []


def test_no_code_compares_a_launcher_name():
    found = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            for operand in operands:
                values = [operand] if not isinstance(operand, (ast.Tuple, ast.List, ast.Set)) \
                    else operand.elts
                found += [(path, node.lineno, v.value) for v in values
                          if isinstance(v, ast.Constant) and v.value in LAUNCHER_NAMES]
    assert found == []


def test_the_rules_would_see_a_violation():
    planted = ast.parse('def f(args):\n    """domainbed.scripts.train in a docstring"""\n'
                        '    from domainbed.scripts import train\n'
                        '    cmd = ["-m", "domainbed.scripts.train"]\n'
                        '    return args.launcher == "slurm" or args.x in ("dummy",)\n')
    assert "domainbed.scripts.train" in set(_imported(planted))
    assert [n.lineno for n in _code_strings(planted) if _names_the_command(n.value)] == [4]
    assert not _names_the_command("is this a model saved by domainbed.scripts.train?")
    compares = [n for n in ast.walk(planted) if isinstance(n, ast.Compare)]
    assert len(compares) == 2


def test_the_launcher_backends_import_only_the_core():
    backends = ("local", "multi_gpu", "slurm", "dummy")
    found = []
    for path, tree in _modules():
        if not path.startswith("domainbed/command_launchers/"):
            continue
        own = path.rsplit("/", 1)[-1][:-3]
        for name in _imported(tree):
            parts = name.split(".")
            if parts[:2] != ["domainbed", "command_launchers"] or len(parts) < 3:
                continue
            inside_core = path.startswith("domainbed/command_launchers/core/")
            if parts[2] in backends and (inside_core or own in backends) and parts[2] != own:
                found.append((path, name))  # a backend or the core importing a backend
    assert found == []
