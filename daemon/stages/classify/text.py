"""Plain text: the charset under which a part reads as clean text a person typed, if any."""

from __future__ import annotations

import re

# C0 controls except TAB LF FF CR, DEL and C1 controls: not in a text a person typed.
_STRAY_CONTROLS = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
# ISO-2022-JP designations (JIS X 0208 1978/1983, ASCII, JIS-Roman, half-width kana, JIS X 0212,
# JIS X 0213) that may follow an ESC.
_ISO2022_ESCAPES = re.compile(rb"\x1b(?:\$[@B]|\([BJI]|\$\([DOPQ]|&@\x1b\$B)")


def text_charset(data: bytes) -> str | None:
    """The charset under which ``data`` is clean text, or None if it is not text."""
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig" if _clean(data[3:], "utf-8") else None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16" if _clean(data, "utf-16") else None
    if b"\x00" in data:
        return None
    if b"\x1b" in data:
        if max(data) >= 0x80:
            return None
        for codec in ("iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2", "iso2022_jp_2004"):
            if _clean(data, codec):
                return "iso-2022-jp"
        # CP50220/50221 extensions (①, ㈱, ...) that no Python codec decodes: judge the structure
        stripped = _ISO2022_ESCAPES.sub(b"", data)
        if b"\x1b" not in stripped and not _STRAY_CONTROLS.search(stripped.decode("ascii")):
            return "iso-2022-jp"
        return None
    for codec, label in (("utf-8", "utf-8"), ("euc_jp", "euc-jp"), ("cp932", "cp932")):
        if _clean(data, codec):
            return label
    return None


def _clean(data: bytes, codec: str) -> bool:
    try:
        text = data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return False
    return _STRAY_CONTROLS.search(text) is None
