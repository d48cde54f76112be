"""The fuzz harness (fuzz/) in CI: a short, bounded run of every target (INTAKE_FUZZ_SECONDS each, default 20;
the long run is in the README), and the memory blow-ups found in third-party parsers bounded by the extraction
child. A crash fails the test and leaves its input in fuzz/findings/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from daemon.extract import extract
from fuzz.targets import ROOT, TARGETS

SECONDS = int(os.environ.get("INTAKE_FUZZ_SECONDS", "20"))


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_short_fuzz_run_finds_no_crash(target: str) -> None:
    done = subprocess.run([sys.executable, "-m", "fuzz", target, "--seconds", str(SECONDS)], cwd=ROOT,
                          capture_output=True, text=True, timeout=SECONDS + 600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["crashes"] == [], summary
    assert summary["executions"] > 0, done.stderr[-2000:]


@pytest.mark.parametrize("path", sorted([*(ROOT / "fuzz" / "crashes").glob("*-oom-*"),
                                         *(ROOT / "fuzz" / "crashes").glob("*-abort-*")]), ids=lambda p: p.name)
def test_a_parser_memory_blowup_is_bounded_by_the_child(path) -> None:
    start = time.monotonic()
    result = extract(path.read_bytes(), "excel", path.suffix.lstrip("."))
    assert result.error in ("memory", "crashed") and result.text == ""
    assert time.monotonic() - start < 30
