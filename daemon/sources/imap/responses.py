"""What the server's answers mean: pure functions over aioimaplib's response lines, and UID sets.

aioimaplib 2.0.3 hands back `Response(result, lines)` and parses nothing we need: no UIDVALIDITY, no FETCH
items. A line is `bytes`; a literal (a message body, a header block) is the `bytearray` right after the line
that announces it with `{n}`, and the FETCH item that follows it (`UID 7)`) is the line after that.
Kept apart from the session so that each can be tested on plain bytes, without a server.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aioimaplib.aioimaplib import literal_data_re


class ShortLiteral(Exception):
    """A literal shorter than the `{n}` that announced it (a broken connection or a bug): never a message."""


@dataclass
class Meta:
    uid: int
    size: int
    internaldate: dt.datetime | None


_MONTHS = {m: i + 1 for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())}
_INTERNALDATE = re.compile(r'(\d{1,2})-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)')


def parse_internaldate(text: str) -> dt.datetime | None:
    m = _INTERNALDATE.search(text)
    if not m or m[2] not in _MONTHS:
        return None
    offset = dt.timedelta(hours=int(m[8]), minutes=int(m[9])) * (1 if m[7] == "+" else -1)
    return dt.datetime(int(m[3]), _MONTHS[m[2]], int(m[1]), int(m[4]), int(m[5]), int(m[6]),
                       tzinfo=dt.timezone(offset))


def uid_set(uids: Iterable[int]) -> str:
    """1,2,3,7,9,10 → '1:3,7,9:10'."""
    ordered = sorted(set(uids))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def parse_uidvalidity(lines: Sequence[Any]) -> int:
    """The `[UIDVALIDITY n]` of a SELECT answer (0 when there is none; the last one wins)."""
    uidvalidity = 0
    for line in lines:
        m = re.search(rb"\[UIDVALIDITY (\d+)\]", bytes(line))
        if m:
            uidvalidity = int(m[1])
    return uidvalidity


def parse_delimiter(lines: Sequence[Any]) -> str | None:
    """The hierarchy delimiter from `LIST "" ""` (None: the server has no hierarchy; '.' when unsaid)."""
    for line in lines:
        m = re.search(rb'\) (?:"((?:\\.|[^"])*)"|NIL)', bytes(line))
        if m:
            return m[1].decode().replace("\\\\", "\\") if m[1] is not None else None
    return "."


def parse_folder_names(lines: Sequence[Any]) -> set[str]:
    """The folder names of a `LIST "" "*"` answer."""
    existing = set()
    for line in lines:
        m = re.search(rb'\) (?:"[^"]*"|NIL) "?([^"]*)"?$', bytes(line))
        if m:
            existing.add(m[1].decode("ascii", "replace"))
    return existing


def parse_search(lines: Sequence[Any]) -> list[int]:
    """The UIDs of a `UID SEARCH` answer, sorted, each once (the last line is the tagged OK)."""
    uids: list[int] = []
    for line in lines[:-1]:
        text = bytes(line).decode("ascii", "replace").strip()
        if text.upper().startswith("SEARCH"):
            text = text[6:]
        uids.extend(int(x) for x in text.split() if x.isdigit())
    return sorted(set(uids))


def parse_meta(lines: Sequence[Any], wanted: Iterable[int]) -> list[Meta]:
    """`UID FETCH (UID RFC822.SIZE INTERNALDATE)`: the wanted UIDs' sizes and dates, in UID order."""
    wanted = set(wanted)
    out: dict[int, Meta] = {}
    for line in lines:
        if not isinstance(line, bytes):
            continue
        uid = re.search(rb"\bUID (\d+)", line)
        size = re.search(rb"\bRFC822\.SIZE (\d+)", line)
        date = re.search(rb'\bINTERNALDATE "([^"]+)"', line)
        if uid and size and int(uid[1]) in wanted:
            out[int(uid[1])] = Meta(int(uid[1]), int(size[1]),
                                    parse_internaldate(date[1].decode("ascii")) if date else None)
    return [out[u] for u in sorted(out)]


def parse_literals(lines: Sequence[Any], section: str, wanted: Iterable[int]) -> dict[int, bytes]:
    """`UID FETCH (UID BODY.PEEK[<section>])` of one or several messages: uid → the literal's bytes, for the
    wanted UIDs (a message expunged meanwhile is absent; other FETCH data the server pushes is ignored).

    The UID is in the line that announces the literal or, when the server sends it after the literal,
    in the line after it. Raises ShortLiteral when a wanted literal is shorter than announced."""
    wanted = set(wanted)
    marker = f"BODY[{section}] {{".encode()
    out: dict[int, bytes] = {}
    for i, line in enumerate(lines):
        if not isinstance(line, bytes) or marker not in line:
            continue
        size = literal_data_re.match(line)
        if not size or i + 1 >= len(lines) or not isinstance(lines[i + 1], bytearray):
            continue
        after = lines[i + 2] if i + 2 < len(lines) and isinstance(lines[i + 2], bytes) else b""
        uid = re.search(rb"\bUID (\d+)", line) or re.search(rb"\bUID (\d+)", after)
        if uid and int(uid[1]) in wanted:
            data = bytes(lines[i + 1])
            if len(data) != int(size.group("size")):
                raise ShortLiteral(f"{len(data)} of {size.group('size').decode()} bytes")
            out.setdefault(int(uid[1]), data)
    return out
