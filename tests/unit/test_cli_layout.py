"""The command line's layout: daemon/cli/ is a package whose helpers (common.py) import no command module and
whose command modules import only those helpers, so it has no import cycle; and nothing else in daemon/ imports
the command line (it is a door onto the package, not a room other rooms use)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

DAEMON = Path(__file__).resolve().parents[2] / "daemon"
CLI = DAEMON / "cli"
# Modules that may import daemon.cli although they are outside it: an entry point such as `python -m daemon`.
OUTSIDE_ALLOWED = {"daemon.__main__"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(DAEMON.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def cli_modules() -> list[str]:
    return sorted(module_name(p) for p in CLI.glob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module an import in the file names (at any depth: imports inside functions count too), with the
    names imported from a package counted as modules when they are one (`from daemon import cli`)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)
    return found


def cli_imports(path: Path) -> set[str]:
    """The modules of daemon.cli (the package itself included) that the file imports."""
    known = set(cli_modules())
    return {m for m in imported(path) if m in known}


@pytest.mark.parametrize("name", [m for m in cli_modules() if m != "daemon.cli.__main__"])
def test_every_module_of_the_command_line_imports(name: str) -> None:
    importlib.import_module(name)


def test_common_imports_no_other_module_of_the_command_line() -> None:
    assert cli_imports(CLI / "common.py") == set()


def test_command_modules_import_only_common() -> None:
    for path in CLI.glob("*.py"):
        if path.name in ("__init__.py", "__main__.py", "common.py"):
            continue
        assert cli_imports(path) <= {"daemon.cli.common"}, path.name


def test_nothing_outside_the_command_line_imports_it() -> None:
    offenders = []
    for path in DAEMON.rglob("*.py"):
        if CLI in path.parents or module_name(path) in OUTSIDE_ALLOWED:
            continue
        if cli_imports(path):
            offenders.append(f"{path.relative_to(DAEMON.parent)} imports {sorted(cli_imports(path))}")
    assert offenders == []


def test_the_checker_sees_an_import_of_the_command_line() -> None:
    """The checks above pass on an empty set: make sure that set is not empty when it should not be."""
    assert cli_imports(CLI / "__init__.py") >= {"daemon.cli.common", "daemon.cli.records", "daemon.cli.staff"}
    assert cli_imports(CLI / "__main__.py") == {"daemon.cli"}
    assert cli_imports(CLI / "staff.py") == {"daemon.cli.common"}
