"""Every `python -m MODULE --flag ...` command in README.md, eval/README.md and docs/*.md names a module that exists and
only flags its command line defines (subcommands' flags included). A docs audit (2026-12-08) found a third of its
stale statements were flags or missing modules; this keeps them from coming back. Only the parsers are built."""
from __future__ import annotations

import argparse
import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "eval" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"python -m ([A-Za-z_][\w.]*)((?:[^`\n]|\\\n)*)")


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def documented_commands() -> dict[str, set[str]]:
    """{module: every --flag written after `python -m module` in the docs (up to the end of the line or backtick;
    a line ending in a backslash continues)}."""
    found: dict[str, set[str]] = {}
    for doc in DOCS:
        for module, rest in COMMAND.findall(doc.read_text()):
            if module in {"venv", "pip", "pytest"} or module.isupper():       # not ours, or a placeholder (CMD)
                continue
            found.setdefault(module, set()).update(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest))
    return found


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    out: set[str] = set()
    for action in parser._actions:
        out.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out |= option_strings(sub)
    return out


def module_parser(module: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser `python -m module` builds: the module runs as __main__ until it parses its arguments."""
    def capture(self, *args, **kwargs):
        raise _Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    monkeypatch.setattr(sys, "argv", [module])
    with pytest.raises(_Parsed) as got:
        runpy.run_module(module, run_name="__main__", alter_sys=False)
    return got.value.parser


COMMANDS = documented_commands()


def test_the_docs_name_commands():
    assert {"eval.run", "mmdiff.sample", "mmdiff.train", "mmdiff.data.synthetic"} <= set(COMMANDS)


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_documented_flags_exist(module, monkeypatch):
    import importlib.util

    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"the docs run python -m {module}, which does not exist"
    if spec.submodule_search_locations:                              # a package runs its __main__
        spec = importlib.util.find_spec(f"{module}.__main__")
        assert spec is not None, f"the docs run python -m {module}, a package without __main__"
    source = Path(spec.origin).read_text()
    if "ArgumentParser" not in source:                               # takes no flags: never run it here
        assert not COMMANDS[module], f"the docs pass {sorted(COMMANDS[module])} to python -m {module}, which takes none"
        return
    parser = module_parser(module, monkeypatch)
    unknown = sorted(COMMANDS[module] - option_strings(parser) - {"--help"})
    assert not unknown, f"the docs pass {unknown} to python -m {module}, which does not define them"
