"""Content-Disposition for a download with a Japanese file name (RFC 6266 with RFC 8187's filename*).

`filename*=UTF-8''…` carries the real name (Edge and Chrome use it); `filename="…"` is an ASCII stand-in for
old clients. Nothing from the mail can end the header or add one: control characters, quotes and
backslashes never reach the ASCII form, and the UTF-8 form is percent-encoded.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote


def safe_name(name: str | None, fallback: str) -> str:
    """The name without a path, control characters or characters Windows forbids; `fallback` if empty."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(" " if unicodedata.category(c)[0] == "C" or c in '<>:"|?*' else c for c in name).strip(" .")
    return name or fallback


def content_disposition(name: str | None, fallback: str) -> str:
    """`attachment` with the real name as filename* and, for old clients, the name itself when it is plain
    ASCII, else `fallback` with the real name's extension."""
    real = safe_name(name, fallback)
    plain = all(0x20 <= ord(c) < 0x7F and c not in '"\\%;' for c in real)
    if plain:
        ascii_name = real
    else:
        ext = real[real.rfind("."):] if "." in real else ""
        ext = ext if ext.isascii() and ext[1:].isalnum() else ""
        ascii_name = fallback if fallback.endswith(ext) else fallback + ext
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(real, safe='')}"
