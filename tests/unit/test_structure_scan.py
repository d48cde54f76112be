"""The structure pass's search for boundary lines (daemon/stages/structure.py `_dash_line`) finds exactly what
the regex it replaced found: a "--" at the start of the bytes or right after CR or LF, at or after `pos`
(the regex could look behind `pos`, so a line end just before it counts)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.stages.structure import Shape, StructureLimits, _dash_line, measure

_REGEX = re.compile(rb"(?:\A|(?<=[\r\n]))--")


def _by_regex(raw: bytes, pos: int) -> int:
    m = _REGEX.search(raw, pos)
    return -1 if m is None else m.start()


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=40).map(lambda b: bytes(b"\r\n-a"[x % 4] for x in b)), st.integers(0, 45))
def test_dash_line_finds_what_the_regex_found(raw: bytes, pos: int) -> None:
    assert _dash_line(raw, pos) == _by_regex(raw, pos)


def test_dash_line_cases() -> None:
    assert _dash_line(b"--b", 0) == 0
    assert _dash_line(b"x--b", 0) == -1  # not at a line start
    assert _dash_line(b"a\r\n--b", 3) == 3  # the CRLF before pos makes pos a line start
    assert _dash_line(b"a\r--b\n--c", 0) == 2  # CR alone ends a line too, and the first one wins
    assert _dash_line(b"a\n--b\r--c", 3) == 6


def test_a_big_base64_part_is_measured_with_its_boundaries() -> None:
    body = (b"QUJD" * 19 + b"\r\n") * 200_000  # ~15 MB of base64 lines, none starting with "--"
    raw = (b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
           b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + body + b"--b--\r\n")
    shape = measure(raw, StructureLimits())
    assert isinstance(shape, Shape) and shape.parts == 3 and shape.depth == 1  # the parts are one level down


def _dash_lines(k: int, end: bytes) -> bytes:
    """A multipart whose body has k lines starting with "--" that are no boundary, with `end` line ends."""
    head = b"Content-Type: multipart/mixed; boundary=\"b\"" + end + end + b"--b" + end + end
    return head + (b"--x" + end) * k + b"--b--" + end


def test_the_search_stays_linear_on_dash_lines_with_cr_only_or_lf_only_line_ends() -> None:
    # A sender controls the line ends: with CR alone, no LF match bounds the CR search (or the other way round).
    # Each search must cost the distance to its match, not the rest of the message: doubling the input doubles
    # the CPU (a search to the end each time quadruples it).
    import time

    def cpu(raw: bytes) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.process_time()  # this process's CPU: other work on the machine does not count
            measure(raw, StructureLimits())
            best = min(best, time.process_time() - start)
        return best

    for end in (b"\r", b"\n", b"\r\n"):
        t1, t2 = cpu(_dash_lines(20_000, end)), cpu(_dash_lines(40_000, end))
        assert t2 < 3.5 * t1 + 0.02, (end, t1, t2)


def test_dash_line_finds_matches_across_the_search_windows_edges() -> None:
    # The search looks in windows of 4096, 8192 … bytes: a match on either side of, or across, an edge is found.
    for end in (b"\n", b"\r"):
        for at in [*range(4085, 4105), *range(12_275, 12_295), 40_000]:
            raw = b"a" * at + end + b"--b" + b"a" * 50
            for pos in (0, 1, at - 3, at + 1):
                assert _dash_line(raw, pos) == _by_regex(raw, pos), (end, at, pos)
