"""R4's decision: detected content + the file name's extension + the allowed kinds → a verdict.

Pure: plain data in, a Classification out. Detection (the other modules of this package) says what
the bytes are; only here does the consultation's ``[attachments.kinds]`` table come in, and only
here does the file name count, for its extension.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence

from .content import Classification, Content

# The formats of a kind that are plain documents. Templates, binary workbooks and the like keep
# their family's kind but are not allowed unless the rules list their format as an extension too.
_PLAIN_FORMATS: dict[str, frozenset[str]] = {
    "word": frozenset({"doc", "docx"}),
    "excel": frozenset({"xls", "xlsx"}),
    "text": frozenset({"txt"}),
    "ichitaro": frozenset({"jtd", "jtdc", "ichitaro-dos"}),
}


def extension(filename: str | None) -> str | None:
    """Lower-cased suffix after the last dot (NFKC, path and trailing dots/spaces dropped)."""
    if not filename:
        return None
    name = unicodedata.normalize("NFKC", filename)
    name = re.split(r"[/\\]", name)[-1].rstrip(" .\t\r\n")
    if "." not in name:
        return None
    ext = name.rsplit(".", 1)[1].strip().lower()
    return ext or None


def _ext_detail(ext: str) -> str:
    return f"extension:{ext}" if re.fullmatch(r"[a-z0-9_+-]{1,16}", ext) else "extension:other"


def decide(c: Content, mime: str, ext: str | None, allowed: Mapping[str, Sequence[str]]) -> Classification:
    """The verdict on content ``c``: a problem, encryption and macros first, then kind and extension."""

    def out(verdict: str, detail: str | None) -> Classification:
        return Classification(c.kind, c.format, mime, verdict, detail)

    if c.problem is not None:
        return out("not_allowed", c.problem)
    if c.encrypted is not None:
        return out("encrypted", c.encrypted)
    if c.macro is not None:
        return out("macro", c.macro)

    kinds = {k: frozenset(str(e).lower().lstrip(".") for e in v) for k, v in allowed.items()}
    all_exts = frozenset().union(*kinds.values()) if kinds else frozenset()
    if c.kind in kinds:
        plain = _PLAIN_FORMATS.get(c.kind, frozenset()) | kinds[c.kind]
        if c.format not in plain:
            return out("not_allowed", f"format:{c.format}")
        if ext is None or ext in kinds[c.kind]:
            return out("allowed", f"charset:{c.charset}" if c.charset else None)
        if ext in all_exts:
            return out("type_mismatch", _ext_detail(ext))
        return out("not_allowed", _ext_detail(ext))
    if ext is not None and ext in all_exts:
        return out("type_mismatch", _ext_detail(ext))
    return out("not_allowed", f"format:{c.format}")
