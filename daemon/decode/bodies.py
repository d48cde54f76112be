"""Decoding a body or any other byte string: the label first, then the fallback chain."""

from __future__ import annotations

from daemon.decode.charsets import CP50221, EUCJP, EUCJP_MS, ascii_compatible, normalize_charset
from daemon.decode.decoded import Decoded
from daemon.decode.decoders import py_decode, run_decoder
from daemon.decode.iso2022jp import JIS_DETECT
from daemon.decode.ranking import CONFIDENT, MARGIN, best_strict, charset_normalizer_guess, plausibility

_BOMS: tuple[tuple[bytes, str, str], ...] = (
    (b"\xef\xbb\xbf", "utf-8-sig", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32", "utf-32"),
    (b"\xff\xfe", "utf-16", "utf-16"),
    (b"\xfe\xff", "utf-16", "utf-16"),
)
_ISO2022_FALLBACKS = ("iso2022_jp_2", "iso2022_jp_2004", "iso2022_jp_3", "iso2022_jp_ext")
_JAPANESE_FALLBACKS = ("utf-8", "cp932", EUCJP, EUCJP_MS)
# Labels that mailers put on anything (defaults); treated like a missing label when the bytes disagree.
_WEAK_LABELS = frozenset({"ascii"})


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
            text, bad = py_decode(data, pycodec)
            if not bad:
                return Decoded(text, name, 0)
            break

    seven_bit = data.isascii()
    has_jis = JIS_DETECT.search(data) is not None or (codec == CP50221 and b"\x0e" in data)
    if seven_bit and not has_jis and (codec is None or ascii_compatible(codec)):
        return Decoded(data.decode("ascii"), "ascii", 0)

    # ``family``: the decoders the label (or JIS escapes in 7-bit data) asks for;
    # ``order``: those, then the generic fallbacks.
    trusted = codec is not None and codec not in _WEAK_LABELS
    family: list[str] = []
    if has_jis and seven_bit:
        # 7-bit data with JIS escapes: any ASCII-compatible decoder would "succeed" with raw escapes.
        family += [CP50221, *_ISO2022_FALLBACKS]
        if trusted and codec is not None and not ascii_compatible(codec):
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
            lenient_cache[name] = (done, 0) if done is not None else run_decoder(name, data)
        return lenient_cache[name]

    if primary is not None:
        text = strict(primary)
        if text is not None:
            score = plausibility(text)
            if primary not in ("utf-8", "utf-16", "utf-32") and "utf-8" in order:
                utext = strict("utf-8")
                if utext is not None and plausibility(utext) >= score - 0.1:
                    return Decoded(utext, "utf-8", 0)
            if score >= CONFIDENT:
                return Decoded(text, primary, 0)
            best = best_strict(order[1:], strict)
            if best is not None and best[2] > score + MARGIN:
                return Decoded(best[1], best[0], 0)
            return Decoded(text, primary, 0)

    best = best_strict(order, strict)
    if best is not None:
        return Decoded(best[1], best[0], 0)

    if primary is None:
        guess = charset_normalizer_guess(data)
        if guess is not None:
            return guess

    # Nothing reads cleanly: the fewest replacements among what the label asks for (the label itself
    # on ties); only without a label among all candidates.
    candidates = family or order or ["utf-8"]
    name = min(candidates, key=lambda c: lenient(c)[1])  # min() keeps the first of equals
    text, bad = lenient(name)
    return Decoded(text, name, bad)
