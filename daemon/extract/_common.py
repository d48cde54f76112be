"""Shared pieces of the format extractors: the result type, limits, errors, bounded zip reads."""

from __future__ import annotations

import time
import zipfile
from dataclasses import dataclass
from xml.etree.ElementTree import Element


@dataclass(frozen=True)
class Extraction:
    text: str  # all text, in reading order, paragraphs/rows separated by "\n"
    tables: list[list[list[str]]]  # each table as rows of cell strings; [] if none
    decoder: str  # what produced the text ("docx", "xlsx", "xls", "doc-piece-table", ...)
    replaced: int  # characters that could not be decoded (U+FFFD)
    error: str | None = None  # short code when extraction failed; then text may be ""


@dataclass(frozen=True)
class ExtractLimits:
    max_seconds: float = 20.0
    max_output_chars: int = 2_000_000
    max_uncompressed: int = 200 * 1024 * 1024
    max_memory_bytes: int = 1024 * 1024 * 1024


class ExtractError(Exception):
    """A format parser gave up; `code` becomes Extraction.error."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class Deadline:
    """Cooperative time check for parsers that loop over untrusted structures."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise ExtractError("timeout")


class BoundedZip:
    """A zip archive whose members are only read within a total uncompressed budget.

    The budget is checked against every member's declared size before anything is
    decompressed (a zip bomb fails at once), and each read is capped at the declared
    size + 1 byte, so a member that lies about its size cannot exceed the budget either
    (zipfile itself stops at the declared size and then fails the CRC check).
    """

    def __init__(self, data: bytes, max_uncompressed: int) -> None:
        import io

        try:
            self.zf = zipfile.ZipFile(io.BytesIO(data))
            infos = self.zf.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
            raise ExtractError("corrupt") from exc
        if len(infos) > 10_000:
            raise ExtractError("too_large")
        total = 0
        for info in infos:
            if info.file_size > max_uncompressed:
                raise ExtractError("too_large")
            total += info.file_size
        if total > max_uncompressed:
            raise ExtractError("too_large")
        self.budget = max_uncompressed
        self.names = {info.filename: info for info in infos}

    def has(self, name: str) -> bool:
        return name in self.names

    def read(self, name: str) -> bytes:
        info = self.names.get(name)
        if info is None:
            raise ExtractError("corrupt")
        if info.file_size > self.budget:
            raise ExtractError("too_large")
        try:
            with self.zf.open(info) as fh:
                out = fh.read(info.file_size + 1)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
            # NotImplementedError: an unsupported compression method; RuntimeError is encryption
            raise ExtractError("corrupt") from exc
        except RuntimeError as exc:
            raise ExtractError("encrypted") from exc
        if len(out) > info.file_size:
            raise ExtractError("corrupt")
        self.budget -= len(out)
        return out


def parse_xml(data: bytes) -> Element:
    """Parse untrusted XML with defusedxml (no DTDs, no entity expansion)."""
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        root: Element = fromstring(data, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise ExtractError("corrupt") from exc
    return root


def rel_target(base_dir: str, target: str) -> str:
    """Resolve an OPC relationship target against the folder of its source part."""
    import posixpath

    if target.startswith("/"):
        return target.lstrip("/")
    return posixpath.normpath(posixpath.join(base_dir, target))


def read_rels(zf: BoundedZip, rels_name: str, base_dir: str) -> list[tuple[str, str]]:
    """[(type-suffix, member-name)] of the internal relationships in a .rels part."""
    if not zf.has(rels_name):
        return []
    root = parse_xml(zf.read(rels_name))
    out: list[tuple[str, str]] = []
    for rel in root:
        if rel.get("TargetMode") == "External":
            continue
        rtype = (rel.get("Type") or "").rsplit("/", 1)[-1]
        target = rel.get("Target")
        if target:
            out.append((rtype, rel_target(base_dir, target)))
    return out


def count_replaced(text: str) -> int:
    return text.count("\ufffd")
