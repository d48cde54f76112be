"""Charset decoding for mail bodies, headers and attachment file names.

The standard library ``email`` package parses the MIME structure; this module turns the raw bytes it
hands back into text.  Every result records which decoder won and how many characters could not be
decoded (each one became U+FFFD), so callers can keep the raw bytes and flag lossy decodes.

Japanese mail is the main concern (see design/LESSONS.md, "Japanese charsets"):

* ``ISO-2022-JP`` is decoded by a hand-written CP50220/CP50221-compatible decoder (``"cp50221"``):
  each JIS X 0208 pair is mapped to Shift_JIS and decoded as cp932, so NEC row 13 (①㈱) and the
  NEC-selected IBM extensions (髙﨑, JIS rows 89-92) come out as Windows shows them, and the wave dash
  comes out as U+FF5E like cp932.
* Every Shift_JIS label means cp932.
* EUC-JP is tried with Python's ``euc_jp`` first and then with an eucJP-ms decoder (``"eucjp-ms"``,
  EUC -> JIS -> Shift_JIS -> cp932, plus the eucJP-ms IBM-extension and user-defined areas).
  ``euc_jis_2004`` is never used as a fallback: it turns eucJP-ms bytes into wrong kanji without
  reporting any error.
* Wrong or missing labels are handled by a fallback chain that only accepts strict decodes and
  compares candidates by how plausible the text is (share of kana, common kanji, ASCII; penalties
  for control characters, private-use and rare characters).  charset-normalizer is only a last
  resort for unlabelled data that no Japanese or Unicode decoder can read.

Functions that take a ``Message`` read the raw header values through ``Message.raw_items()``, so
they work with messages parsed by ``email.message_from_bytes`` under ``policy.compat32`` (preferred)
and ``policy.default`` alike.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email.header
import email.message
import re
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "Decoded",
    "decode_bytes",
    "decode_filename",
    "decode_header",
    "normalize_charset",
    "part_text",
]

REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class Decoded:
    """A decoded text, the decoder that produced it and the number of U+FFFD it had to emit."""

    text: str
    decoder: str
    replaced: int


# ---------------------------------------------------------------------------------------------
# Charset labels
# ---------------------------------------------------------------------------------------------

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
def _ascii_compatible(name: str) -> bool:
    if name in (CP50221, EUCJP, EUCJP_MS):
        return True
    try:
        return _ASCII_PROBE.decode(name) == _ASCII_PROBE.decode("ascii")
    except (UnicodeError, LookupError):
        return False


# ---------------------------------------------------------------------------------------------
# Python codecs with counted replacements
# ---------------------------------------------------------------------------------------------

_counter = threading.local()
_COUNT_HANDLER = "pubcomment.decode.count"


def _count_and_replace(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _counter.n = getattr(_counter, "n", 0) + 1
    return REPLACEMENT, exc.end


codecs.register_error(_COUNT_HANDLER, _count_and_replace)


def _py_decode(data: bytes, codec: str) -> tuple[str, int]:
    try:
        return data.decode(codec), 0
    except UnicodeDecodeError:
        pass
    _counter.n = 0
    text = data.decode(codec, _COUNT_HANDLER)
    return text, _counter.n


# ---------------------------------------------------------------------------------------------
# JIS X 0208 pair -> Shift_JIS -> cp932
# ---------------------------------------------------------------------------------------------


def _jis_pair_to_sjis(j1: int, j2: int) -> tuple[int, int]:
    s1 = ((j1 + 1) >> 1) + (0x70 if j1 <= 0x5E else 0xB0)
    if j1 & 1:
        s2 = j2 + (0x1F if j2 <= 0x5F else 0x20)
    else:
        s2 = j2 + 0x7E
    return s1, s2


_pair_cache: dict[int, str | None] = {}


def _jis0208(j1: int, j2: int) -> str | None:
    """One JIS X 0208 pair (0x21-0x7E each) as cp932 decodes it, or None if cp932 has no character."""
    key = (j1 << 8) | j2
    try:
        return _pair_cache[key]
    except KeyError:
        pass
    s1, s2 = _jis_pair_to_sjis(j1, j2)
    try:
        ch: str | None = bytes((s1, s2)).decode("cp932")
    except UnicodeDecodeError:
        ch = None
    _pair_cache[key] = ch
    return ch


# eucJP-ms: IBM extensions that JIS X 0212 lacks live at 0x8F 0xF3F3-0xF4FE (as glibc EUC-JP-MS maps them).
_EUCJPMS_IBM = (
    "\u2170\u2171\u2172\u2173\u2174\u2175\u2176\u2177\u2178\u2179\u2160\u2161\u2162\u2163\u2164\u2165"
    "\u2166\u2167\u2168\u2169\uff07\uff02\u3231\u2116\u2121\u70bb\u4efc\u50f4\u51ec\u5307\u5324\ufa0e"
    "\u548a\u5759\ufa0f\u585a\u589e\u5bec\u5cf5\u5d53\ufa11\u5fb7\u6085\u6120\u654e\u663b\u6665\u6674"
    "\u6717\u6801\ufa13\ufa14\u6a6b\u6ae2\u6df8\u6df2\u7028\u51de\u732a\u7501\u7682\u769e\u76ca\u7930"
    "\u793c\u795e\u7965\u798f\u7ae7\u9756\u7cbe\u7da0\u7dd6\u7fbd\u8362\ufa1f\u85b0\u8612\ufa21\u8807"
    "\u8af8\u8b7f\u8cf4\u8d76\ufa23\ufa24\u9038\u90de\u90fd\u9115\ufa27\ufa28\u9592\u9686\ufa29\u973b"
    "\u974d\u9751\u98ef\u98fc\u9928\u999e\u9ad9\u9b72\u9db4\u9ed1"
)

_EUCJPMS_IBM_FIRST = 0xF3F3


def _jis0212(j1: int, j2: int) -> str | None:
    """One JIS X 0212 pair (0x21-0x7E each); the eucJP-ms IBM/user-defined areas included."""
    b1, b2 = j1 | 0x80, j2 | 0x80
    if b1 >= 0xF5:  # user-defined rows 85-94 of the 0212 plane: second half of the eucJP-ms PUA
        return chr(0xE3AC + (b1 - 0xF5) * 94 + (b2 - 0xA1))
    if b1 in (0xF3, 0xF4):
        idx = (b1 - 0xF3) * 94 + (b2 - 0xA1) - (0xF3 - 0xA1)
        if 0 <= idx < len(_EUCJPMS_IBM):
            return _EUCJPMS_IBM[idx]
    try:
        return bytes((0x8F, b1, b2)).decode("euc_jp")
    except UnicodeDecodeError:
        return None


def _jis0213(j1: int, j2: int, plane: int) -> str | None:
    raw = bytes((j1 | 0x80, j2 | 0x80)) if plane == 1 else bytes((0x8F, j1 | 0x80, j2 | 0x80))
    try:
        return raw.decode("euc_jis_2004")
    except UnicodeDecodeError:
        return None


# ---------------------------------------------------------------------------------------------
# CP50220/CP50221/CP50222-compatible ISO-2022-JP decoder
# ---------------------------------------------------------------------------------------------

_ASCII, _KANA, _X0208, _X0212, _X0213_1, _X0213_2 = range(6)
_ESC_SEQ = re.compile(rb"\x1b(?:\(([BJHI])|\$([@B])|\$\(([@BDOPQ])|&@)")
_ESC_ANY = re.compile(rb"\x1b[\x20-\x2f]*[\x30-\x7e]?")
_RUN_7BIT = re.compile(rb"[\x21-\x7e]+")
_JIS_DETECT = re.compile(rb"\x1b(?:\$[@B]|\(I|\$\([@BDOPQ])")
_MULTI_MODE = {b"D": _X0212, b"O": _X0213_1, b"Q": _X0213_1, b"P": _X0213_2}


def _decode_cp50221(data: bytes) -> tuple[str, int]:
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
            sjis.extend(_jis_pair_to_sjis(run[k], run[k + 1]))
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
            ch = _jis0208(run[k], run[k + 1])
        elif mode == _X0212:
            ch = _jis0212(run[k], run[k + 1])
        else:
            ch = _jis0213(run[k], run[k + 1], 1 if mode == _X0213_1 else 2)
        if ch is None:
            out.append(REPLACEMENT)
            bad += 1
        else:
            out.append(ch)
    if odd:
        out.append(REPLACEMENT)
        bad += 1
    return bad


# ---------------------------------------------------------------------------------------------
# eucJP-ms decoder
# ---------------------------------------------------------------------------------------------

_RUN_ASCII = re.compile(rb"[\x00-\x7f]+")


def _decode_eucjp_ms(data: bytes) -> tuple[str, int]:
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
                ch, width = _jis0212(data[i + 1] & 0x7F, data[i + 2] & 0x7F), 3
        elif 0xA1 <= b <= 0xFE and i + 1 < n and 0xA1 <= data[i + 1] <= 0xFE:
            width = 2
            if b >= 0xF5:
                ch = chr(0xE000 + (b - 0xF5) * 94 + (data[i + 1] - 0xA1))
            else:
                ch = _jis0208(b & 0x7F, data[i + 1] & 0x7F)
        if ch is None:
            out.append(REPLACEMENT)
            bad += 1
            i += 1 if width == 1 else width
        else:
            out.append(ch)
            i += width
    return "".join(out), bad


# ---------------------------------------------------------------------------------------------
# Decoder dispatch and plausibility
# ---------------------------------------------------------------------------------------------


def _run_decoder(name: str, data: bytes) -> tuple[str, int]:
    if name == CP50221:
        return _decode_cp50221(data)
    if name == EUCJP_MS:
        return _decode_eucjp_ms(data)
    if name == EUCJP:
        return _py_decode(data, "euc_jp")
    return _py_decode(data, name)


@lru_cache(maxsize=1 << 16)
def _char_weight(ch: str) -> float:
    o = ord(ch)
    if o < 0x80:
        return 1.0 if 0x20 <= o < 0x7F or ch in "\t\n\r\f" else -1.0
    if o == 0xFFFD:
        return -2.0
    if 0x3040 <= o <= 0x30FF or 0x3000 <= o <= 0x303F or 0xFF01 <= o <= 0xFF5E:
        return 1.0  # kana, CJK punctuation, full-width ASCII
    if 0x4E00 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF:
        try:
            sj = ch.encode("cp932")
        except UnicodeEncodeError:
            return 0.1  # CJK outside JIS X 0208 and the cp932 extensions: rare in Japanese text
        code = int.from_bytes(sj, "big")
        if 0x889F <= code <= 0x9872:
            return 1.0  # JIS level 1 kanji
        return 0.6  # level 2 kanji and the NEC/IBM extension kanji
    if 0xFF61 <= o <= 0xFF9F:
        return 0.5  # half-width katakana: real, but also what wrong decoders love to produce
    if 0x80 <= o < 0xA0 or 0xE000 <= o <= 0xF8FF:
        return -1.0  # C1 controls, private use
    if 0xA0 <= o <= 0x24F:
        return 0.8  # Latin-1 and Latin Extended letters
    if 0x2460 <= o <= 0x24FF or 0x3200 <= o <= 0x33FF or 0x2150 <= o <= 0x218F or 0x2010 <= o <= 0x2312:
        return 0.8  # circled numbers, squared units, Roman numerals, punctuation and symbols
    cat = unicodedata.category(ch)
    if cat in ("Cc", "Cn", "Co", "Cs"):
        return -1.0
    return 0.4


def _plausibility(text: str) -> float:
    """Average plausibility of the characters, 1.0 for clean Japanese or ASCII text."""
    if not text:
        return 1.0
    if len(text) > _SAMPLE:
        step = len(text) // 8
        text = "".join(text[k : k + _SAMPLE // 8] for k in range(0, len(text), step))
    return sum(_char_weight(c) for c in text) / len(text)


_SAMPLE = 32768  # long texts are scored on eight evenly spread slices


# ---------------------------------------------------------------------------------------------
# Bodies and other byte strings
# ---------------------------------------------------------------------------------------------

_BOMS: tuple[tuple[bytes, str, str], ...] = (
    (b"\xef\xbb\xbf", "utf-8-sig", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32", "utf-32"),
    (b"\xff\xfe", "utf-16", "utf-16"),
    (b"\xfe\xff", "utf-16", "utf-16"),
)
_Strict = Callable[[str], str | None]
_ISO2022_FALLBACKS = ("iso2022_jp_2", "iso2022_jp_2004", "iso2022_jp_3", "iso2022_jp_ext")
_JAPANESE_FALLBACKS = ("utf-8", "cp932", EUCJP, EUCJP_MS)
# Labels that mailers put on anything (defaults); treated like a missing label when the bytes disagree.
_WEAK_LABELS = frozenset({"ascii"})
# A decoding that already reads this well is not second-guessed by other strict decoders.
_CONFIDENT = 0.9
# Another strict decoder must read this much better than the labelled one to override the label.
_MARGIN = 0.2
# A strict decoder that was not asked for must read at least this well to be believed at all
# (cp932 "decodes" many broken byte strings into rare kanji and private-use characters).
_MIN_FALLBACK = 0.5


def decode_bytes(data: bytes, label: str | None = None) -> Decoded:
    """Decode body or other text bytes, using ``label`` (a MIME charset) as the first choice.

    Order: a byte-order mark; pure ASCII; the labelled decoder (ISO-2022-JP escapes in 7-bit data
    outrank any label); valid multi-byte UTF-8 outranks a legacy label; other strict decoders
    (utf-8, cp932, euc-jp, eucjp-ms; for ISO-2022-JP Python's iso2022_jp_2/2004/3/ext) win when the
    label fails or reads clearly worse; a fallback that was not asked for must also read plausibly.
    When nothing decodes cleanly, unlabelled data gets charset-normalizer as a last resort; otherwise
    the decoder with the fewest replacements wins, chosen among the decoders the label asks for (the
    label itself on ties), or among all candidates when there is no usable label.
    """
    data = bytes(data)
    codec = normalize_charset(label)
    if not data:
        return Decoded("", codec or "ascii", 0)

    for bom, pycodec, name in _BOMS:
        if data.startswith(bom):
            text, bad = _py_decode(data, pycodec)
            if not bad:
                return Decoded(text, name, 0)
            break

    seven_bit = data.isascii()
    has_jis = _JIS_DETECT.search(data) is not None or (codec == CP50221 and b"\x0e" in data)
    if seven_bit and not has_jis and (codec is None or _ascii_compatible(codec)):
        return Decoded(data.decode("ascii"), "ascii", 0)

    # ``family``: the decoders the label (or JIS escapes in 7-bit data) asks for;
    # ``order``: those, then the generic fallbacks.
    trusted = codec is not None and codec not in _WEAK_LABELS
    family: list[str] = []
    if has_jis and seven_bit:
        # 7-bit data with JIS escapes: any ASCII-compatible decoder would "succeed" with raw escapes.
        family += [CP50221, *_ISO2022_FALLBACKS]
        if trusted and codec is not None and not _ascii_compatible(codec):
            family.append(codec)
    elif trusted and codec is not None:
        family.append(codec)
        if codec == CP50221:
            family.extend(_ISO2022_FALLBACKS)
        elif codec == EUCJP:
            family.append(EUCJP_MS)
        elif codec == "latin-1":
            family.append("cp1252")
    order = list(family)
    if not seven_bit:
        if has_jis:
            order.append(CP50221)
        order.extend(_JAPANESE_FALLBACKS)
    family = list(dict.fromkeys(family))
    order = list(dict.fromkeys(order))
    primary = family[0] if family else None

    lenient_cache: dict[str, tuple[str, int]] = {}
    strict_cache: dict[str, str | None] = {}

    def strict(name: str) -> str | None:
        if name not in strict_cache:
            if name in (CP50221, EUCJP_MS):
                text, bad = lenient(name)
                strict_cache[name] = None if bad else text
            else:
                try:
                    strict_cache[name] = data.decode("euc_jp" if name == EUCJP else name)
                except UnicodeDecodeError:
                    strict_cache[name] = None
        return strict_cache[name]

    def lenient(name: str) -> tuple[str, int]:
        if name not in lenient_cache:
            done = strict_cache.get(name)
            lenient_cache[name] = (done, 0) if done is not None else _run_decoder(name, data)
        return lenient_cache[name]

    if primary is not None:
        text = strict(primary)
        if text is not None:
            score = _plausibility(text)
            if primary not in ("utf-8", "utf-16", "utf-32") and "utf-8" in order:
                utext = strict("utf-8")
                if utext is not None and _plausibility(utext) >= score - 0.1:
                    return Decoded(utext, "utf-8", 0)
            if score >= _CONFIDENT:
                return Decoded(text, primary, 0)
            best = _best_strict(order[1:], strict)
            if best is not None and best[2] > score + _MARGIN:
                return Decoded(best[1], best[0], 0)
            return Decoded(text, primary, 0)

    best = _best_strict(order, strict)
    if best is not None:
        return Decoded(best[1], best[0], 0)

    if primary is None:
        guess = _charset_normalizer_guess(data)
        if guess is not None:
            return guess

    # Nothing reads cleanly: the fewest replacements among what the label asks for (the label itself
    # on ties); only without a label among all candidates.
    candidates = family or order or ["utf-8"]
    name = min(candidates, key=lambda c: lenient(c)[1])  # min() keeps the first of equals
    text, bad = lenient(name)
    return Decoded(text, name, bad)


def _best_strict(order: list[str], strict: _Strict) -> tuple[str, str, float] | None:
    """The most plausible clean decoding among ``order`` (earlier wins ties), if any is plausible."""
    best: tuple[str, str, float] | None = None
    for name in order:
        text = strict(name)
        if text is None:
            continue
        score = _plausibility(text)
        if score >= _MIN_FALLBACK and (best is None or score > best[2]):
            best = (name, text, score)
            if score >= _CONFIDENT:
                break  # candidates are in order of preference; a confident reading ends the search
    return best


def _charset_normalizer_guess(data: bytes) -> Decoded | None:
    """Last resort for unlabelled bytes that no Japanese or Unicode decoder reads cleanly."""
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - it is a declared dependency
        return None
    match = from_bytes(data).best()
    if match is None:
        return None
    name = normalize_charset(match.encoding)
    if name is None:
        return None
    text, bad = _run_decoder(name, data)
    if bad:
        return None
    return Decoded(text, name, 0)


# ---------------------------------------------------------------------------------------------
# Header values (RFC 2047)
# ---------------------------------------------------------------------------------------------

HeaderValue = str | bytes | email.header.Header

_ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([BbQq])\?([^?]*)\?=")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")


def _header_bytes(value: HeaderValue) -> bytes:
    """The raw bytes of a header value: str values carry 8-bit bytes as surrogate escapes."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, email.header.Header):
        # compat32 returns a Header (charset unknown-8bit) for values holding 8-bit bytes; its
        # str() would replace them, so take the chunks.
        parts: list[bytes] = []
        for chunk, charset in value._chunks:  # no public access to the raw chunks
            name = str(charset) if charset is not None else "us-ascii"
            if name in ("unknown-8bit", "us-ascii"):
                parts.append(chunk.encode("utf-8", "surrogateescape"))
            else:
                parts.append(chunk.encode("utf-8", "surrogatepass"))
        return b"".join(parts)
    return value.encode("utf-8", "surrogateescape")


def _unfold(raw: bytes) -> bytes:
    return _FOLD.sub(b"", raw).replace(b"\r", b"").replace(b"\n", b"")


def _ew_payload(encoding: bytes, text: bytes) -> bytes | None:
    if encoding in (b"B", b"b"):
        compact = re.sub(rb"[^A-Za-z0-9+/]", b"", text)
        compact += b"=" * (-len(compact) % 4)
        try:
            return base64.b64decode(compact)
        except (binascii.Error, ValueError):
            return None
    return re.sub(rb"=([0-9A-Fa-f]{2})", lambda m: bytes((int(m.group(1), 16),)), text.replace(b"_", b" "))


def decode_header(value: HeaderValue) -> Decoded:
    """Decode a whole header value: RFC 2047 encoded words and raw 8-bit (undeclared) bytes.

    Pass the raw value (``Message.raw_items()``, or ``msg[name]`` under ``policy.compat32``, which
    may be a ``str`` with surrogate escapes or an ``email.header.Header``).  Adjacent encoded words
    in the same charset are joined as bytes before decoding, so a character or JIS escape split
    across two words survives.  ``decoder`` is the decoder used, or several joined with ``+``.
    U+FFFD already present in a ``str`` value (decoded lossily by someone else) counts as replaced.
    """
    prior = value.count(REPLACEMENT) if isinstance(value, str) else 0
    raw = _unfold(_header_bytes(value))

    # Segments: (charset label, bytes) for encoded words, (None, bytes) for raw text.
    segments: list[tuple[str | None, bytes]] = []
    pos = 0
    prev_word = False
    for m in _ENCODED_WORD.finditer(raw):
        between = raw[pos : m.start()]
        payload = _ew_payload(m.group(2), m.group(3))
        if payload is None:
            segments.append((None, between + m.group()))
            prev_word = False
            pos = m.end()
            continue
        label = m.group(1).decode("ascii", "replace").split("*", 1)[0]
        if prev_word and not between.strip(b" \t"):
            last_label, last_bytes = segments[-1]
            assert last_label is not None
            if _same_charset(last_label, label):
                segments[-1] = (last_label, last_bytes + payload)
            else:
                segments.append((label, payload))
        else:
            if between:
                segments.append((None, between))
            segments.append((label, payload))
        prev_word = True
        pos = m.end()
    if pos < len(raw):
        segments.append((None, raw[pos:]))

    # Raw 8-bit text: choose one decoder from all raw bytes of the header together.
    raw_8bit = b"".join(s for lab, s in segments if lab is None and (not s.isascii() or b"\x1b" in s))
    raw_hint = decode_bytes(raw_8bit).decoder if raw_8bit else None

    texts: list[str] = []
    decoders: list[str] = []
    replaced = prior
    for lab, seg in segments:
        d = decode_bytes(seg, lab if lab is not None else raw_hint)
        texts.append(d.text)
        replaced += d.replaced
        if d.decoder != "ascii":
            decoders.append(d.decoder)
    names = list(dict.fromkeys(decoders))
    return Decoded("".join(texts), "+".join(names) if names else "ascii", replaced)


def _same_charset(a: str, b: str) -> bool:
    return (normalize_charset(a) or a.lower()) == (normalize_charset(b) or b.lower())


# ---------------------------------------------------------------------------------------------
# MIME parameters (RFC 2045/2231) and file names
# ---------------------------------------------------------------------------------------------


def _raw_header(part: email.message.Message, name: str) -> bytes | None:
    wanted = name.lower()
    for key, value in part.raw_items():
        if key.lower() == wanted:
            return _unfold(_header_bytes(value))
    return None


def _parse_params(raw: bytes) -> list[tuple[str, bytes]]:
    """Parameters of a structured header value, as (lower-case name, raw value bytes).

    Lenient: quoted strings honour backslash escapes only when they are pure ASCII (a Shift_JIS
    trail byte can be 0x5C), unquoted values run to the next ``;``.
    """
    params: list[tuple[str, bytes]] = []
    n = len(raw)
    i = _skip_value(raw, 0)
    while i < n:
        if raw[i] in b"; \t":
            i += 1
            continue
        eq = raw.find(b"=", i)
        semi = raw.find(b";", i)
        if eq < 0 or (0 <= semi < eq):
            i = n if semi < 0 else semi + 1
            continue
        pname = raw[i:eq].strip().decode("ascii", "replace").lower()
        j = eq + 1
        while j < n and raw[j] in b" \t":
            j += 1
        if j < n and raw[j] == 0x22:
            value, i = _quoted(raw, j)
        else:
            end = raw.find(b";", j)
            end = n if end < 0 else end
            value, i = raw[j:end].strip(), end
        params.append((pname, value))
    return params


def _skip_value(raw: bytes, i: int) -> int:
    """Index just past the main value (e.g. ``attachment``) before the first parameter."""
    n = len(raw)
    while i < n and raw[i] != 0x3B:
        if raw[i] == 0x22:
            _, i = _quoted(raw, i)
            continue
        i += 1
    return i


def _quoted(raw: bytes, start: int) -> tuple[bytes, int]:
    """Parse a quoted string starting at the opening quote; return (content, index after it)."""
    close = raw.find(b'"', start + 1)
    naive = raw[start + 1 : close if close >= 0 else len(raw)]
    escapes = naive.isascii()
    out = bytearray()
    j = start + 1
    n = len(raw)
    while j < n:
        c = raw[j]
        if c == 0x22:
            return bytes(out), j + 1
        if c == 0x5C and escapes and j + 1 < n and raw[j + 1] in b'"\\':
            out.append(raw[j + 1])
            j += 2
            continue
        out.append(c)
        j += 1
    return bytes(out), n


_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")


def _rfc2231(params: list[tuple[str, bytes]], key: str) -> Decoded | None:
    """Join an RFC 2231 parameter (``key*``, ``key*0*``, ``key*1``...) as bytes, then decode once."""
    pattern = re.compile(re.escape(key) + r"\*(?:(\d+)(\*)?)?")
    segments: dict[int, tuple[bool, bytes]] = {}
    for name, value in params:
        m = pattern.fullmatch(name)
        if m is None:
            continue
        index = int(m.group(1)) if m.group(1) is not None else 0
        extended = m.group(1) is None or m.group(2) is not None
        segments.setdefault(index, (extended, value))
    if not segments:
        return None
    charset: str | None = None
    joined = bytearray()
    for pos, index in enumerate(sorted(segments)):
        extended, value = segments[index]
        if extended:
            if pos == 0 and value.count(b"'") >= 2:
                label, _lang, value = value.split(b"'", 2)
                charset = label.decode("ascii", "replace") or None
            value = _PERCENT.sub(lambda m: bytes((int(m.group(1), 16),)), value)
        joined += value
    return decode_bytes(bytes(joined), charset)


def decode_filename(part: email.message.Message) -> Decoded | None:
    """The attachment file name of a MIME part, or None if it has none.

    Precedence: Content-Disposition ``filename*`` (RFC 2231, continuations joined as bytes, then
    decoded once), Content-Disposition ``filename`` (RFC 2047 words or raw 8-bit inside), then the
    same for Content-Type ``name*`` / ``name``.  Raw header values come from ``raw_items()``, so
    both ``policy.compat32`` and ``policy.default`` messages work.  Empty names count as none.
    """
    for header, key in (("content-disposition", "filename"), ("content-type", "name")):
        raw = _raw_header(part, header)
        if raw is None:
            continue
        params = _parse_params(raw)
        extended = _rfc2231(params, key)
        if extended is not None and extended.text.strip():
            return extended
        for name, value in params:
            if name == key and value.strip():
                return decode_header(value)
    return None


def part_text(part: email.message.Message) -> Decoded:
    """The decoded text of a (text/*) MIME part: transfer-decoded payload bytes through decode_bytes."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        payload = b""
    return decode_bytes(payload, _content_charset(part))


def _content_charset(part: email.message.Message) -> str | None:
    raw = _raw_header(part, "content-type")
    if raw is None:
        return None
    params = _parse_params(raw)
    for name, value in params:
        if name == "charset":
            return value.decode("ascii", "replace")
    extended = _rfc2231(params, "charset")
    return extended.text if extended is not None else None
