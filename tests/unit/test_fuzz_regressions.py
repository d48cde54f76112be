"""Every crash the fuzzer found (fuzz/crashes/<target>-<name>) is replayed through its target: each must now
pass. Memory blow-ups ("-oom-") and aborts ("-abort-", a Rust panic that aborts the process) inside a
third-party parser are bounded by the extraction child instead: tests/integration/test_fuzz.py runs those through
`extract`."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.targets import ROOT, TARGETS, crash_target, seeds

CRASHES = sorted(p for p in (ROOT / "fuzz" / "crashes").glob("*") if p.is_file())


@pytest.mark.parametrize("path", [p for p in CRASHES if "-oom-" not in p.name and "-abort-" not in p.name],
                         ids=lambda p: p.name)
def test_a_saved_crash_no_longer_crashes_its_target(path: Path) -> None:
    target = crash_target(path)
    assert target is not None, f"{path.name}: name it <target>-<what>"
    TARGETS[target](path.read_bytes())


def test_every_target_has_seeds() -> None:
    for target in TARGETS:
        assert seeds(target), target


@pytest.mark.parametrize("target", ["parse", "classify"])
def test_the_seeds_pass_their_target(target: str) -> None:
    for seed in seeds(target):
        TARGETS[target](seed)


def test_an_ole_file_that_declares_streams_larger_than_itself_is_corrupt_without_reading_them() -> None:
    # Found by the long fuzz run: 1.5 KB whose root entry declares a mini stream of gigabytes; olefile read it
    # sector by sector (45 s, gigabytes of memory) before the extractors compared the sizes with the file.
    import tracemalloc

    from daemon.extract import extract_in_process

    data = (ROOT / "fuzz" / "crashes" / "jtdc-olefile-root-size.jtdc").read_bytes()
    tracemalloc.start()
    try:
        result = extract_in_process(data, "ichitaro", "jtdc")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.error == "corrupt" and result.text == ""
    assert peak < 50 * 1024 * 1024, peak
