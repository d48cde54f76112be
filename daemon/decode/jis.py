"""Single characters of the JIS X 0208, 0212 and 0213 planes, as Windows and glibc map them.

A JIS X 0208 pair goes through Shift_JIS to cp932, so NEC row 13 (①㈱) and the NEC-selected IBM
extensions (髙﨑) come out as Windows shows them; JIS X 0212 includes the eucJP-ms IBM-extension and
user-defined areas.  Both hand-written decoders (``iso2022jp`` and ``eucjpms``) share these.
"""

from __future__ import annotations


def jis_pair_to_sjis(j1: int, j2: int) -> tuple[int, int]:
    """The Shift_JIS bytes of a JIS X 0208 pair (0x21-0x7E each)."""
    s1 = ((j1 + 1) >> 1) + (0x70 if j1 <= 0x5E else 0xB0)
    if j1 & 1:
        s2 = j2 + (0x1F if j2 <= 0x5F else 0x20)
    else:
        s2 = j2 + 0x7E
    return s1, s2


_pair_cache: dict[int, str | None] = {}


def jis0208(j1: int, j2: int) -> str | None:
    """One JIS X 0208 pair (0x21-0x7E each) as cp932 decodes it, or None if cp932 has no character."""
    key = (j1 << 8) | j2
    try:
        return _pair_cache[key]
    except KeyError:
        pass
    s1, s2 = jis_pair_to_sjis(j1, j2)
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


def jis0212(j1: int, j2: int) -> str | None:
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


def jis0213(j1: int, j2: int, plane: int) -> str | None:
    """One JIS X 0213 pair of plane 1 or 2, or None if it names no character."""
    raw = bytes((j1 | 0x80, j2 | 0x80)) if plane == 1 else bytes((0x8F, j1 | 0x80, j2 | 0x80))
    try:
        return raw.decode("euc_jis_2004")
    except UnicodeDecodeError:
        return None
