"""MIME parameters (RFC 2045/2231) and the attachment file names they carry."""

from __future__ import annotations

import email.message
import re

from daemon.decode.bodies import decode_bytes
from daemon.decode.decoded import Decoded
from daemon.decode.headers import decode_header, raw_header


def parse_params(raw: bytes) -> list[tuple[str, bytes]]:
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


def rfc2231(params: list[tuple[str, bytes]], key: str) -> Decoded | None:
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
        raw = raw_header(part, header)
        if raw is None:
            continue
        params = parse_params(raw)
        extended = rfc2231(params, key)
        if extended is not None and extended.text.strip():
            return extended
        for name, value in params:
            if name == key and value.strip():
                return decode_header(value)
    return None
