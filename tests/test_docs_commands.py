"""The docs run as written: every command a newcomer copies from README.md and docs/ names
a module that exists and flags its parser accepts; the sweep, status and Debug28 training
commands run here in a tiny mode (a dummy launcher, a few steps); every file path the docs
name exists."""

import argparse
import glob
import importlib
import importlib.util
import os
import re
import shlex
import shutil

import pytest

from tests.fixtures.paths import REPO

DOC_FILES = ["README.md"] + sorted(os.path.relpath(p, REPO)
                                   for p in glob.glob(os.path.join(REPO, "docs", "*.md")))
SHELL_FENCES = ("", "bash", "sh", "shell", "console")
# placeholders of the docs -> values that parse (paths become folders of the test)
PLACEHOLDERS = {"k": "0", "t": "0", "N": "1", "n": "1", "D": "PACS", "A": "ERM", "r": "4"}


def shell_blocks(text: str):
    """The bodies of the fenced code blocks in a shell language."""
    lines, block, language = text.splitlines(), None, None
    for line in lines:
        if line.startswith("```"):
            if block is None:
                language, block = line[3:].strip(), []
            else:
                if language in SHELL_FENCES:
                    yield "\n".join(block)
                block = None
        elif block is not None:
            block.append(line)


def _simplify(command: str) -> str:
    """A documented command with its optional parts dropped and alternatives reduced to the
    first: ``[--x | --y]`` -> nothing, ``{a,b}`` -> a, ``a|b`` -> a, ``DIR[,DIR...]`` -> DIR."""
    previous = None
    while previous != command:
        previous, command = command, re.sub(r"\[[^\[\]]*\]", "", command)
    command = re.sub(r"\{([^{},]+),[^{}]*\}", r"\1", command)
    return re.sub(r"(\S+?)\|\S+", r"\1", command)


def doc_commands():
    """``(file, argv)`` of every ``python -m MODULE ...`` command in the docs' shell blocks."""
    found = []
    for name in DOC_FILES:
        with open(os.path.join(REPO, name), encoding="utf-8") as f:
            text = f.read()
        for block in shell_blocks(text):
            block = re.sub(r"\\\n\s*", " ", block)
            for line in block.splitlines():
                for part in line.split("&&"):
                    part = part.strip()
                    if not part.startswith("python -m") or " ... " in f" {part} ":
                        continue
                    argv = shlex.split(_simplify(part), comments=True)
                    found.append((name, argv[2:]))
    return found


COMMANDS = doc_commands()


def _ids():
    return [f"{name}:{' '.join(argv)[:70]}" for name, argv in COMMANDS]


class _Parsed(Exception):
    """Raised once a command's own parser accepted its arguments."""


@pytest.mark.parametrize("name, argv", COMMANDS, ids=_ids())
def test_every_documented_command_names_a_module_whose_parser_accepts_it(name, argv,
                                                                         monkeypatch):
    module = argv[0]
    if module == "pytest":
        return
    assert importlib.util.find_spec(module) is not None, f"{name}: no module {module}"
    values = [PLACEHOLDERS.get(a, a) for a in argv[1:]]
    real_parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        real_parse(self, args, namespace)  # a bad flag or value exits with status 2 here
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    entry = importlib.import_module(module)
    with pytest.raises(_Parsed):
        entry.main(values)


PATH_FLAGS = ("--data_dir", "--output_dir", "--aux_dir", "--output_dir_lp", "--input_dir")
PATH_PLACEHOLDERS = ("DATA", "OUT", "AUX", "LP", "O", "D", "DIR", "SWEEP", "SWEEP_DIR")


@pytest.fixture
def fresh_clone(tmp_path, monkeypatch):
    """A working directory like a fresh clone's: the recipe files, no data, no runs."""
    shutil.copytree(os.path.join(REPO, "sweeps"), tmp_path / "sweeps")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _tiny(argv, root):
    """A documented sweep command in a tiny mode: listed with the dummy launcher (no SLURM
    options), every placeholder path a folder of the test."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg.startswith("--slurm_"):
            skip = True
            continue
        previous = argv[i - 1] if i else ""
        if previous == "--command_launcher":
            arg = "dummy"
        elif previous in PATH_FLAGS:
            head, _, rest = arg.partition("/")
            if head in PATH_PLACEHOLDERS:  # DATA, OUT, AUX/PACS_notest, LP, ...
                arg = os.path.join(str(root / head.lower()), rest)
        elif arg == "RECIPE.json":
            arg = os.path.join("sweeps", "embedded.json")
        out.append(arg)
    if "launch" in out and "--command_launcher" not in out:
        out += ["--command_launcher", "dummy"]
    return out + (["--skip_confirmation"] if "launch" in out else [])


def _users_recipe(argv) -> bool:
    """A ``--recipe`` that is the user's own file shown in the doc (not one of sweeps/ or the
    RECIPE.json placeholder): its JSON block is checked by
    ``test_every_documented_recipe_passes_validation``."""
    if "--recipe" not in argv:
        return False
    path = argv[argv.index("--recipe") + 1]
    return path != "RECIPE.json" and not os.path.exists(os.path.join(REPO, path))


# a target sweep with --aux_dir lists its jobs from the auxiliary runs of the step before
# it (docs/ratatouille.md, step 1), and a user's own recipe needs the user's data: their
# flags are checked above, not listed here
SWEEPS = [(n, a) for n, a in COMMANDS if a[0] == "domainbed.scripts.sweep"
          and "--aux_dir" not in a and not _users_recipe(a)]


def documented_recipes():
    """``(file, recipe)`` of every JSON block of the docs that is a recipe (has a name and
    target or datasets)."""
    import json
    found = []
    for name in DOC_FILES:
        with open(os.path.join(REPO, name), encoding="utf-8") as f:
            text = f.read()
        for block in re.findall(r"```json\n(.*?)```", text, flags=re.S):
            try:
                value = json.loads(block)
            except ValueError:
                continue
            if isinstance(value, dict) and "name" in value and (
                    "target" in value or "datasets" in value):
                found.append((name, value))
    return found


def test_every_documented_recipe_passes_validation():
    from domainbed_aux.recipe.validate import recipe_problems
    recipes = documented_recipes()
    assert any(r["name"] == "mine" for _, r in recipes)  # docs/datasets.md's folder recipe
    problems = {f"{name}:{r['name']}": recipe_problems(r) for name, r in recipes}
    assert all(not p for p in problems.values()), problems


@pytest.mark.parametrize("name, argv", SWEEPS, ids=[f"{n}:{' '.join(a)[:70]}"
                                                    for n, a in SWEEPS])
def test_every_documented_sweep_command_runs_listed(name, argv, fresh_clone, capsys):
    from domainbed.scripts import sweep as sweep_cli
    assert sweep_cli.main(_tiny(argv[1:], fresh_clone)) == 0, capsys.readouterr().err
    assert not os.path.exists(fresh_clone / "runs")  # listing writes nothing


def test_the_first_example_of_the_sweeps_page_runs_as_written_on_a_fresh_clone(fresh_clone,
                                                                               capsys):
    from domainbed.scripts import sweep as sweep_cli
    (first,) = [a for n, a in SWEEPS if n == os.path.join("docs", "sweeps.md")][:1]
    assert sweep_cli.main(first[1:] + ["--skip_confirmation"]) == 0
    listed = [l for l in capsys.readouterr().out.splitlines() if l.startswith("Dummy launcher")]
    assert len(listed) == 24  # as the page says


def test_the_readme_training_command_runs_in_a_tiny_mode(fresh_clone):
    from domainbed.scripts import train as train_script
    (argv,) = [a for n, a in COMMANDS if n == "README.md" and a[0] == "domainbed.scripts.train"
               and "Debug28" in a]
    argv = argv[1:]
    argv[argv.index("--steps") + 1] = "2"
    tiny = '{"backbone": "tiny_cnn", "batch_size": 8}'
    assert train_script.main(argv + ["--hparams", tiny]) == 0
    assert os.path.exists(fresh_clone / "runs" / "debug28" / "done")


def test_every_path_the_docs_name_exists():
    missing = []
    all_files = {os.path.basename(p) for p in glob.glob(os.path.join(REPO, "**", "*.py"),
                                                        recursive=True)}
    for name in DOC_FILES:
        with open(os.path.join(REPO, name), encoding="utf-8") as f:
            text = f.read()
        for path in re.findall(r"`([\w./-]+)`", text):
            if re.match(r"^(domainbed|domainbed_aux|benchmarks|sweeps|tests|docs)/", path):
                if not os.path.exists(os.path.join(REPO, path)):
                    missing.append(f"{name}: {path}")
            elif path.endswith(".py") and "/" not in path and path not in all_files:
                missing.append(f"{name}: {path}")
    assert missing == []
