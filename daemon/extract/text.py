"""Plain text (.txt): decoded by daemon.decode.decode_bytes (charset detection lives there)."""

from __future__ import annotations

import codecs

from ._common import Extraction

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _fallback_decode(data: bytes) -> tuple[str, str, int]:
    for bom, codec in _BOMS:
        if data.startswith(bom):
            text = data.decode(codec, errors="replace")
            return text, codec, text.count("\ufffd")
    chain = ["utf-8", "cp932", "euc_jp"]
    if data.isascii() and b"\x1b$" in data:
        chain.insert(0, "iso2022_jp")
    for codec in chain:
        try:
            return data.decode(codec), codec, 0
        except UnicodeDecodeError:
            continue
    text = data.decode("cp932", errors="replace")
    return text, "cp932", text.count("\ufffd")


def extract_text(data: bytes) -> Extraction:
    try:
        from daemon.decode import decode_bytes
    except ImportError:  # daemon.decode not written yet: a minimal chain of our own meanwhile
        text, decoder, replaced = _fallback_decode(data)
    else:
        decoded = decode_bytes(data)
        text, decoder, replaced = decoded.text, decoded.decoder, decoded.replaced
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return Extraction(text=text, tables=[], decoder=decoder, replaced=replaced)
