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


def test_an_ole_root_entry_with_a_bad_type_byte_is_still_held_to_the_file_size() -> None:
    # Found by the one-hour classify run: 22 KB whose first directory entry has type 20 (not 5, root) and
    # declares a 1.5 GB mini stream. olefile still reads the mini stream through it; the size check skipped the
    # entry for its type, and olevba then took 18 s and 3.4 GB per call. It is the root whatever its type says.
    import tracemalloc

    from daemon.stages.classify import classify

    data = (ROOT / "fuzz" / "crashes" / "classify-olefile-root-type.bin").read_bytes()
    tracemalloc.start()
    try:
        result = classify(data, "意見.doc", "application/octet-stream", {"word": ["doc", "docx"]})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (result.verdict, result.detail) == ("not_allowed", "limits:uncompressed")
    assert peak < 50 * 1024 * 1024, peak
