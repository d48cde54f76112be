"""What ships: the wheel of this checkout holds `daemon/` and `migrations/` only.

The dev kit (throwaway clamd and Dovecot, the 意見書 builders, the demo) lives in the checkout's
`devkit/` and must not reach an installed copy: it builds paths into a checkout that an installed copy
does not have. Unused libraries must not be pulled in by `pip install` either.

The wheel is built from a copy of the checkout (without .venv, var/ and build leftovers) so that the
build writes nothing into the working tree, offline (`--no-index`) and without build isolation: the
venv's setuptools (the `test` extra) is the backend, which takes about a second.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from email.parser import HeaderParser
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(".git", ".venv", "var", "build", "dist", "__pycache__", "*.egg-info", ".ruff_cache",
                              ".pytest_cache")
OLD_DEVKIT = {"daemon/devkit.py", "daemon/devkit_imap.py", "daemon/devkit_ikensho.py", "daemon/demo.py"}
UNUSED = {"mail-parser", "xlrd"}
TEST_ONLY = {"python-docx"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(CHECKOUT, src, ignore=SKIP)
    dist = work / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(dist), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = dist.glob("*.whl")
    with zipfile.ZipFile(built) as zf:
        yield zf


def _runtime_requirements(zf: zipfile.ZipFile) -> set[str]:
    """The normalised names of Requires-Dist without an `extra ==` marker (what `pip install` pulls in)."""
    (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
    headers = HeaderParser().parsestr(zf.read(meta).decode("utf-8"))
    names = set()
    for req in headers.get_all("Requires-Dist") or []:
        if "extra ==" in req:
            continue
        name = re.match(r"[A-Za-z0-9._-]+", req.strip())
        assert name, req
        names.add(re.sub(r"[-_.]+", "-", name.group(0)).lower())
    return names


def test_wheel_holds_daemon_and_migrations_only(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    outside = [n for n in names if n.split("/", 1)[0] not in {"daemon", "migrations"}
               and not n.split("/", 1)[0].endswith(".dist-info")]
    assert outside == [], outside
    assert not any(n.startswith("devkit/") for n in names)
    assert "daemon/__init__.py" in names and "migrations/env.py" in names


def test_wheel_has_no_dev_kit_inside_daemon(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    assert not names & OLD_DEVKIT, names & OLD_DEVKIT
    assert not [n for n in names if "devkit" in n or n.startswith("daemon/demo")]


def test_wheel_requires_no_unused_or_test_only_library(wheel: zipfile.ZipFile) -> None:
    runtime = _runtime_requirements(wheel)
    assert "sqlalchemy" in runtime  # the parse works: a real dependency is seen
    assert not runtime & UNUSED, runtime & UNUSED
    assert not runtime & TEST_ONLY, runtime & TEST_ONLY
