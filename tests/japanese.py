"""Japanese test strings and what real mailers make of them, written independently of the decoder under test:
Windows CP50221 (ISO-2022-JP with the NEC rows and half-width kana), RFC 2047 B-words, RFC 2231 percent bytes."""

from __future__ import annotations

import base64

PROBE = "テスト①②㈱髙﨑～ｶﾀｶﾅ"
EUC_PROBE = "テスト日本語ｶﾀｶﾅ"




def _nec_selected() -> dict[str, bytes]:
    """Characters of the NEC-selected IBM extension rows (cp932 0xED/0xEE) -> their cp932 bytes."""
    table: dict[str, bytes] = {}
    for lead in (0xED, 0xEE):
        for trail in range(0x40, 0xFD):
            try:
                table.setdefault(bytes((lead, trail)).decode("cp932"), bytes((lead, trail)))
            except UnicodeDecodeError:
                pass
    return table


NEC_SELECTED = _nec_selected()


def sjis_to_jis(s1: int, s2: int) -> tuple[int, int]:
    base = (s1 - 0x81 if s1 < 0xA0 else s1 - 0xC1) * 2 + 0x21
    if s2 >= 0x9F:
        return base + 1, s2 - 0x7E
    return base, s2 - 0x1F - (1 if s2 >= 0x80 else 0)


def to_cp50221(text: str) -> bytes:
    """Encode like Windows CP50221: JIS X 0208 incl. NEC rows, ESC ( I for half-width kana."""
    out = bytearray()
    state = b"\x1b(B"
    for ch in text:
        sj = NEC_SELECTED.get(ch) or ch.encode("cp932")  # IBM 0xFA-0xFC has no JIS row: NEC-selected
        if len(sj) == 1 and sj[0] < 0x80:
            want, code = b"\x1b(B", sj
        elif len(sj) == 1:
            want, code = b"\x1b(I", bytes((sj[0] - 0x80,))
        else:
            want, code = b"\x1b$B", bytes(sjis_to_jis(sj[0], sj[1]))
        if want != state:
            out += want
            state = want
        out += code
    if state != b"\x1b(B":
        out += b"\x1b(B"
    return bytes(out)


def b_word(charset: str, data: bytes) -> str:
    return f"=?{charset}?B?{base64.b64encode(data).decode('ascii')}?="


def percent(data: bytes) -> str:
    return "".join(f"%{b:02X}" for b in data)
