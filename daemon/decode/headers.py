"""Header values: RFC 2047 encoded words and raw 8-bit (undeclared) bytes."""

from __future__ import annotations

import base64
import binascii
import email.header
import email.message
import re

from daemon.decode.bodies import decode_bytes
from daemon.decode.charsets import normalize_charset
from daemon.decode.decoded import REPLACEMENT, Decoded

HeaderValue = str | bytes | email.header.Header

_ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([BbQq])\?([^?]*)\?=")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")


def header_bytes(value: HeaderValue) -> bytes:
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


def unfold(raw: bytes) -> bytes:
    """One line: folding white space kept, the line breaks themselves removed."""
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
    raw = unfold(header_bytes(value))

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


def raw_header(part: email.message.Message, name: str) -> bytes | None:
    """The unfolded raw bytes of the first header ``name`` of a part, from ``raw_items()``."""
    wanted = name.lower()
    for key, value in part.raw_items():
        if key.lower() == wanted:
            return unfold(header_bytes(value))
    return None
