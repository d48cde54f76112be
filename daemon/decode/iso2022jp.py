"""A CP50220/CP50221/CP50222-compatible ISO-2022-JP decoder.

Python's ``iso2022_jp`` codecs reject the NEC and IBM extensions that Windows mailers write
(①, ㈱, 髙, half-width kana), so ISO-2022-JP is decoded here, pair by pair through ``jis``.
"""

from __future__ import annotations

import re

from daemon.decode.decoded import REPLACEMENT
from daemon.decode.jis import jis0208, jis0212, jis0213, jis_pair_to_sjis

_ASCII, _KANA, _X0208, _X0212, _X0213_1, _X0213_2 = range(6)
_ESC_SEQ = re.compile(rb"\x1b(?:\(([BJHI])|\$([@B])|\$\(([@BDOPQ])|&@)")
_ESC_ANY = re.compile(rb"\x1b[\x20-\x2f]*[\x30-\x7e]?")
_RUN_7BIT = re.compile(rb"[\x21-\x7e]+")
JIS_DETECT = re.compile(rb"\x1b(?:\$[@B]|\(I|\$\([@BDOPQ])")
_MULTI_MODE = {b"D": _X0212, b"O": _X0213_1, b"Q": _X0213_1, b"P": _X0213_2}


def decode_cp50221(data: bytes) -> tuple[str, int]:
    """ISO-2022-JP as Windows writes it (CP50220/CP50221/CP50222).

    ESC ( B / ESC ( J / ESC ( H: ASCII (JIS Roman is read as ASCII, as Windows does);
    ESC $ @ / ESC $ B / ESC $ ( B: JIS X 0208 with the NEC and NEC-selected IBM rows (via cp932);
    ESC ( I and SO/SI: half-width katakana; raw 0xA1-0xDF (8-bit JIS): half-width katakana;
    ESC $ ( D: JIS X 0212; ESC $ ( O/Q/P: JIS X 0213.  A line feed returns to ASCII (mailers that
    forget ESC ( B at the end of a line).  Each undecodable pair, byte or escape sequence counts as
    one replacement.
    """
    out: list[str] = []
    bad = 0
    mode = _ASCII
    shifted = False
    i = 0
    n = len(data)
    while i < n:
        b = data[i]
        if b == 0x1B:
            m = _ESC_SEQ.match(data, i)
            if m is not None:
                single, double, multi = m.group(1), m.group(2), m.group(3)
                if single is not None:  # ESC ( F
                    mode = _KANA if single == b"I" else _ASCII
                elif double is not None or multi in (b"@", b"B"):  # ESC $ F, ESC $ ( B
                    mode = _X0208
                elif multi is not None:
                    mode = _MULTI_MODE[multi]
                # ESC & @ only announces JIS X 0208-1990: no change
                i = m.end()
                continue
            m2 = _ESC_ANY.match(data, i)
            i = m2.end() if m2 is not None else i + 1
            out.append(REPLACEMENT)
            bad += 1
            continue
        if b == 0x0E:
            shifted = True
            i += 1
            continue
        if b == 0x0F:
            shifted = False
            i += 1
            continue
        if b < 0x21 or b == 0x7F:
            out.append(chr(b))
            if b == 0x0A:
                mode, shifted = _ASCII, False
            i += 1
            continue
        if b >= 0x80:
            if 0xA1 <= b <= 0xDF:
                out.append(chr(0xFF61 + b - 0xA1))
            else:
                out.append(REPLACEMENT)
                bad += 1
            i += 1
            continue
        m = _RUN_7BIT.match(data, i)
        assert m is not None
        run = m.group()
        i = m.end()
        if shifted or mode == _KANA:
            for c in run:
                if c <= 0x5F:
                    out.append(chr(0xFF61 + c - 0x21))
                else:
                    out.append(REPLACEMENT)
                    bad += 1
            continue
        if mode == _ASCII:
            out.append(run.decode("ascii"))
            continue
        bad += _decode_pairs(run, mode, out)
    return "".join(out), bad


def _decode_pairs(run: bytes, mode: int, out: list[str]) -> int:
    """Append the characters of a run of two-byte codes; return the number of replacements."""
    bad = 0
    odd = len(run) & 1
    if mode == _X0208:
        sjis = bytearray()
        for k in range(0, len(run) - odd, 2):
            sjis.extend(jis_pair_to_sjis(run[k], run[k + 1]))
        try:
            out.append(sjis.decode("cp932"))
        except UnicodeDecodeError:
            pass
        else:
            if odd:
                out.append(REPLACEMENT)
                bad += 1
            return bad
    for k in range(0, len(run) - odd, 2):
        if mode == _X0208:
            ch = jis0208(run[k], run[k + 1])
        elif mode == _X0212:
            ch = jis0212(run[k], run[k + 1])
        else:
            ch = jis0213(run[k], run[k + 1], 1 if mode == _X0213_1 else 2)
        if ch is None:
            out.append(REPLACEMENT)
            bad += 1
        else:
            out.append(ch)
    if odd:
        out.append(REPLACEMENT)
        bad += 1
    return bad
