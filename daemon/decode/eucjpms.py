"""An eucJP-ms decoder (EUC-JP with the Windows / glibc EUC-JP-MS extensions).

Python's ``euc_jp`` rejects the NEC and IBM extensions and the user-defined area, and
``euc_jis_2004`` reads them as wrong kanji without an error, so eucJP-ms is decoded here.
"""

from __future__ import annotations

import re

from daemon.decode.decoded import REPLACEMENT
from daemon.decode.jis import jis0208, jis0212

_RUN_ASCII = re.compile(rb"[\x00-\x7f]+")


def decode_eucjp_ms(data: bytes) -> tuple[str, int]:
    """EUC-JP with the eucJP-ms extensions (as glibc EUC-JP-MS and Windows CP51932 write them).

    Two-byte codes are mapped to their JIS pair, then to Shift_JIS and decoded as cp932 (so row 13
    gives ①㈱ and 0xA1C1 gives U+FF5E like cp932); rows 85-94 are the user-defined area
    (U+E000-U+E3AB); 0x8E: half-width katakana; 0x8F: JIS X 0212 plus the eucJP-ms IBM extensions.
    """
    out: list[str] = []
    bad = 0
    i = 0
    n = len(data)
    while i < n:
        b = data[i]
        if b < 0x80:
            m = _RUN_ASCII.match(data, i)
            assert m is not None
            out.append(m.group().decode("ascii"))
            i = m.end()
            continue
        ch: str | None = None
        width = 1
        if b == 0x8E:
            if i + 1 < n and 0xA1 <= data[i + 1] <= 0xDF:
                ch, width = chr(0xFF61 + data[i + 1] - 0xA1), 2
        elif b == 0x8F:
            if i + 2 < n and 0xA1 <= data[i + 1] <= 0xFE and 0xA1 <= data[i + 2] <= 0xFE:
                ch, width = jis0212(data[i + 1] & 0x7F, data[i + 2] & 0x7F), 3
        elif 0xA1 <= b <= 0xFE and i + 1 < n and 0xA1 <= data[i + 1] <= 0xFE:
            width = 2
            if b >= 0xF5:
                ch = chr(0xE000 + (b - 0xF5) * 94 + (data[i + 1] - 0xA1))
            else:
                ch = jis0208(b & 0x7F, data[i + 1] & 0x7F)
        if ch is None:
            out.append(REPLACEMENT)
            bad += 1
            i += 1 if width == 1 else width
        else:
            out.append(ch)
            i += width
    return "".join(out), bad
