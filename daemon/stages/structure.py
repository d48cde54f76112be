"""The shape of a message, measured on its raw bytes before the stdlib parses it (issue 16.2/16.3).

The stdlib parser nests one generator per MIME level (5,000 nested multiparts raise RecursionError) and
keeps every part in memory, so the dimensions a sender controls are measured first, in one linear pass
that holds nothing but a stack of open boundaries:
- the MIME depth (multiparts and message/* inside each other),
- the number of parts (header blocks),
- the number of fields in one header block and the length of one header line.
A breach is `Breach("mime_depth")` …: the mail is rejected as `malformed_structure` without being parsed.

The pass follows the stdlib's rules where they matter for counting: lines end in CRLF, CR or LF; a
boundary line is `--boundary` (or `--boundary--`) with optional trailing blanks; a message/* part holds a
nested header block; parts of multipart/digest default to message/rfc822. Where it could disagree with the
stdlib, it over-counts (every open boundary closes inner ones), and the parse stage still turns a
RecursionError into the same verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message

from daemon.rules import InputLimits

_LINE_END = re.compile(rb"\r\n|\r|\n")
_CONTINUATION = (b" "[0], b"\t"[0])


@dataclass(frozen=True)
class StructureLimits:
    max_depth: int = 32
    max_parts: int = 1000
    max_header_fields: int = 1000
    max_header_line: int = 32768

    @classmethod
    def of(cls, limits: InputLimits) -> StructureLimits:
        return cls(limits.max_mime_depth, limits.max_mime_parts, limits.max_header_fields,
                   limits.max_header_line_bytes)


@dataclass(frozen=True)
class Breach:
    which: str  # mime_depth | mime_parts | header_fields | header_line


@dataclass
class Shape:
    depth: int = 0
    parts: int = 0
    header_fields: int = 0  # the most in one header block
    header_line: int = 0  # the longest header line
    steps: int = 0  # lines read and boundary searches made: the work done, for the linearity test


def _line(raw: bytes, pos: int) -> tuple[int, int]:
    """(end of the line's content, start of the next line)."""
    m = _LINE_END.search(raw, pos)
    return (len(raw), len(raw)) if m is None else (m.start(), m.end())


def _dash_line(raw: bytes, pos: int) -> int:
    """Where the first line at or after `pos` that starts with "--" starts (only those can be boundaries), or -1.

    bytes.find, not a regex: a pattern with a look-behind is tried at every byte, and over the base64 of a
    20 MB attachment that was a fifth of the daemon's CPU (BENCHMARKS.md, issue 20). The two searches (after LF,
    after CR) look in a window that doubles, so that a call costs about the distance to its match even when a
    sender uses only one kind of line end; searching the whole rest for the other kind would be quadratic."""
    if pos == 0 and raw.startswith(b"--"):
        return 0
    start = max(pos - 1, 0)  # the line end just before `pos` makes `pos` a line start
    n, window = len(raw), 4096
    while True:
        stop = min(n, start + window)
        lf = raw.find(b"\n--", start, stop)
        cr = raw.find(b"\r--", start, stop if lf == -1 else lf)
        if cr != -1 or lf != -1:
            return (cr if cr != -1 else lf) + 1
        if stop == n:
            return -1
        start, window = stop - 2, window * 2  # a match across the window's edge is found in the next one


def _content_type(value: bytes | None, default: str) -> tuple[str, str | None]:
    if value is None or not value.strip():
        return default, None
    # The stdlib's get_content_type: the value before ";", lowercased; not "type/subtype": text/plain.
    ctype = value.split(b";", 1)[0].strip().lower().decode("latin-1")
    if ctype.count("/") != 1:
        return "text/plain", None
    if not ctype.startswith("multipart/"):
        return ctype, None
    probe = Message()  # the boundary parameter, read the stdlib's way (quotes, RFC 2231)
    probe["Content-Type"] = value.decode("latin-1")
    boundary = probe.get_param("boundary")
    return ctype, (boundary if isinstance(boundary, str) else None)


def measure(raw: bytes, limits: StructureLimits) -> Shape | Breach:
    """The message's shape, or the first limit it breaks. Linear in len(raw); memory: the open boundaries."""
    shape = Shape()
    # Each open multipart: (boundary bytes, its content type, its depth); a message/* nests a header block only.
    stack: list[tuple[bytes, str, int]] = []
    index: dict[bytes, int] = {}  # boundary → its position on the stack
    pos = 0
    n = len(raw)
    default = "text/plain"
    depth = 0  # of the header block being read: 0 is the message's own
    while True:
        # -- one header block ----------------------------------------------------------------------
        shape.parts += 1
        if shape.parts > limits.max_parts:
            return Breach("mime_parts")
        fields = 0
        ctype_value: bytearray | None = None
        in_ctype = False
        while pos < n:
            shape.steps += 1
            end, nxt = _line(raw, pos)
            if end - pos > limits.max_header_line:
                return Breach("header_line")
            shape.header_line = max(shape.header_line, end - pos)
            if end == pos:  # the blank line ends the block
                pos = nxt
                break
            if raw[pos] in _CONTINUATION:
                if in_ctype and ctype_value is not None:
                    ctype_value += raw[pos:end]
            else:
                colon = raw.find(b":", pos, end)
                if colon == -1 and fields == 0 and raw.startswith(b"From ", pos):
                    pos = nxt  # an mbox "From " line
                    continue
                if colon == -1:
                    break  # the stdlib ends the header block here too (the line is body)
                fields += 1
                if fields > limits.max_header_fields:
                    return Breach("header_fields")
                in_ctype = raw[pos:colon].strip().lower() == b"content-type"
                if in_ctype:
                    ctype_value = bytearray(raw[colon + 1 : end])
            pos = nxt
        shape.header_fields = max(shape.header_fields, fields)
        ctype, boundary = _content_type(bytes(ctype_value) if ctype_value is not None else None, default)
        default = "text/plain"
        shape.depth = max(shape.depth, depth)
        if ctype.startswith("multipart/") and boundary:
            if depth + 1 > limits.max_depth:
                return Breach("mime_depth")
            b = boundary.encode("utf-8", "surrogateescape")
            index[b] = len(stack)
            stack.append((b, ctype, depth))
        elif ctype.startswith("message/") and ctype != "message/delivery-status":
            if depth + 1 > limits.max_depth:
                return Breach("mime_depth")
            depth += 1
            continue  # its body is a header block of its own
        # -- the body: skip to the next line that closes or opens a part of an open multipart ------
        found = False
        while stack:
            shape.steps += 1
            at = _dash_line(raw, pos)
            if at == -1:
                return shape
            after = at + 2
            end, nxt = _line(raw, after)
            token = raw[after:end].rstrip(b" \t")
            closing = token.endswith(b"--") and token[:-2] in index
            level = index.get(token[:-2] if closing else token)
            if level is None:
                pos = nxt if nxt > after else after
                continue
            # Every boundary inside this one is closed by it.
            for inner, _, _ in stack[level + 1 :]:
                index.pop(inner, None)
            del stack[level + 1 :]
            pos = nxt
            if closing:
                index.pop(stack[level][0], None)
                stack.pop()
                continue  # the epilogue of this multipart: look for the parent's boundary
            default = "message/rfc822" if stack[level][1] == "multipart/digest" else "text/plain"
            depth = stack[level][2] + 1
            found = True
            break
        if not found:
            return shape
