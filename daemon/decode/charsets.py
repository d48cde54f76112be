"""MIME charset labels -> the canonical name of the decoder that reads them.

Mailers write the same charset under dozens of names; every Shift_JIS label means cp932, every
ISO-2022-JP label our CP50221-compatible decoder, and labels that say nothing about the bytes
(``unknown-8bit``, ``binary``...) count as no label, so the fallback chain decides.
"""

from __future__ import annotations

import codecs
from functools import lru_cache

CP50221 = "cp50221"
EUCJP = "euc-jp"
EUCJP_MS = "eucjp-ms"

_ALIASES: dict[str, str] = {
    **dict.fromkeys(
        (
            "shift_jis", "shift-jis", "sjis", "x-sjis", "s-jis", "s_jis", "x-shift-jis", "x-shift_jis",
            "ms_kanji", "ms-kanji", "csshiftjis", "windows-31j", "cswindows31j", "cp932", "ms932",
            "ms-932", "windows-932", "x-ms-cp932", "ibm-943", "ibm943", "sjis-open", "sjis-win",
        ),
        "cp932",
    ),
    **dict.fromkeys(
        (
            "iso-2022-jp", "iso2022-jp", "iso2022jp", "iso_2022_jp", "csiso2022jp", "jis", "x-jis",
            "iso-2022-jp-ms", "iso2022jp-ms", "iso-2022-jp-ext", "cp50220", "cp50221", "cp50222",
            "x-cp50220", "x-cp50221", "x-cp50222", "iso-2022-jp-1", "iso-2022-jp-2", "csiso2022jp2",
            "iso-2022-jp-3", "iso-2022-jp-2004",
        ),
        CP50221,
    ),
    **dict.fromkeys(
        (
            "euc-jp", "eucjp", "euc_jp", "x-euc-jp", "x-eucjp", "x-euc", "ujis", "u-jis",
            "cseucpkdfmtjapanese", "extended_unix_code_packed_format_for_japanese",
        ),
        EUCJP,
    ),
    **dict.fromkeys(
        (
            "eucjp-ms", "euc-jp-ms", "eucjpms", "eucjp-open", "euc-jp-open", "eucjp-win", "euc-jp-win",
            "cp51932", "windows-51932", "x-eucjp-open", "x-eucjp-ms",
        ),
        EUCJP_MS,
    ),
    **dict.fromkeys(("ks_c_5601-1987", "ks_c_5601", "ksc5601", "euc-kr", "cseuckr", "windows-949"), "cp949"),
    **dict.fromkeys(("gb2312", "csgb2312", "x-gbk", "gbk", "cp936", "windows-936"), "gbk"),
    "unicode-1-1-utf-8": "utf-8",
    "x-unicode20utf8": "utf-8",
}

# Labels that carry no information about the bytes.
_NO_CHARSET = frozenset(
    {"", "unknown", "unknown-8bit", "x-unknown", "8bit", "7bit", "binary", "default", "none", "charset",
     "x-user-defined", "us-ascii?", "_autodetect_all", "auto"}
)
# Python codecs that are not charsets of mail text.
_NOT_TEXT_CODECS = frozenset({"idna", "punycode", "raw_unicode_escape", "unicode_escape", "undefined",
                              "mbcs", "oem", "charmap"})


def normalize_charset(label: str | bytes | None) -> str | None:
    """Map a MIME charset label to a canonical decoder name, or ``None`` if it names no usable charset.

    Returns one of our own names (``"cp50221"``, ``"euc-jp"``, ``"eucjp-ms"``, ``"cp932"``,
    ``"latin-1"``) or the lower-case canonical name of a Python text codec
    (``codecs.lookup(...).name``, e.g. ``"utf-8"``, ``"cp1252"``, ``"iso8859-15"``).
    """
    if label is None:
        return None
    if isinstance(label, bytes):
        label = label.decode("ascii", "replace")
    key = label.strip().strip("\"'").strip().lower()
    key = key.split("*", 1)[0]  # RFC 2231 language suffix in RFC 2047 words: "utf-8*ja"
    if key in _NO_CHARSET:
        return None
    hit = _ALIASES.get(key) or _ALIASES.get(key.replace("_", "-"))
    if hit:
        return hit
    return _python_codec(key)


@lru_cache(maxsize=256)
def _python_codec(key: str) -> str | None:
    tries = [key]
    if key.startswith("x-"):
        tries.append(key[2:])
    if key.startswith("windows-"):
        tries.append("cp" + key[len("windows-"):])
    if key.endswith(("-i", "-e")) and key.startswith("iso-8859"):
        tries.append(key[:-2])
    for name in tries:
        try:
            info = codecs.lookup(name)
        except (LookupError, ValueError):
            continue
        if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_TEXT_CODECS:
            return None
        canon = info.name
        hit = _ALIASES.get(canon) or _ALIASES.get(canon.replace("_", "-"))
        if hit:
            return hit
        if canon == "iso8859-1":
            return "latin-1"
        return canon
    return None


_ASCII_PROBE = bytes(range(0x20, 0x7F)) + b"\t\r\n"


@lru_cache(maxsize=256)
def ascii_compatible(name: str) -> bool:
    """Whether the decoder reads printable ASCII as ASCII (so pure 7-bit data needs no decoding)."""
    if name in (CP50221, EUCJP, EUCJP_MS):
        return True
    try:
        return _ASCII_PROBE.decode(name) == _ASCII_PROBE.decode("ascii")
    except (UnicodeError, LookupError):
        return False

