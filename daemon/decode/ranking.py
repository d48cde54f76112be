"""How plausible a decoding reads, and the best among several clean ones.

A wrong strict decoder often "succeeds": cp932 reads many broken byte strings as rare kanji and
private-use characters.  Candidates are therefore compared by the share of kana, common kanji and
ASCII, with penalties for control, private-use and rare characters.  charset-normalizer is only
the last resort for unlabelled bytes that no Japanese or Unicode decoder reads cleanly.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from functools import lru_cache

from daemon.decode.charsets import normalize_charset
from daemon.decode.decoded import Decoded
from daemon.decode.decoders import run_decoder

# A strict decoder by name: the text, or None when the bytes do not decode cleanly.
Strict = Callable[[str], str | None]
# A decoding that already reads this well is not second-guessed by other strict decoders.
CONFIDENT = 0.9
# Another strict decoder must read this much better than the labelled one to override the label.
MARGIN = 0.2
# A strict decoder that was not asked for must read at least this well to be believed at all
# (cp932 "decodes" many broken byte strings into rare kanji and private-use characters).
_MIN_FALLBACK = 0.5


_SAMPLE = 32768  # long texts are scored on eight evenly spread slices


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


def plausibility(text: str) -> float:
    """Average plausibility of the characters, 1.0 for clean Japanese or ASCII text."""
    if not text:
        return 1.0
    if len(text) > _SAMPLE:
        step = len(text) // 8
        text = "".join(text[k : k + _SAMPLE // 8] for k in range(0, len(text), step))
    return sum(_char_weight(c) for c in text) / len(text)



def best_strict(order: list[str], strict: Strict) -> tuple[str, str, float] | None:
    """The most plausible clean decoding among ``order`` (earlier wins ties), if any is plausible."""
    best: tuple[str, str, float] | None = None
    for name in order:
        text = strict(name)
        if text is None:
            continue
        score = plausibility(text)
        if score >= _MIN_FALLBACK and (best is None or score > best[2]):
            best = (name, text, score)
            if score >= CONFIDENT:
                break  # candidates are in order of preference; a confident reading ends the search
    return best


def charset_normalizer_guess(data: bytes) -> Decoded | None:
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
    text, bad = run_decoder(name, data)
    if bad:
        return None
    return Decoded(text, name, 0)
