"""Shared pieces of the format extractors: the result type, limits, errors, and the guards
(daemon.guards: the deadline and the bounded zip, shared with the classifier) in our error codes."""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree.ElementTree import Element

from daemon.guards import BoundedZip, Deadline, StopCode, ZipLimits


@dataclass(frozen=True)
class Extraction:
    text: str  # all text, in reading order, paragraphs/rows separated by "\n"
    tables: list[list[list[str]]]  # each table as rows of cell strings; [] if none
    decoder: str  # what produced the text ("docx", "xlsx", "xls", "doc-piece-table", ...)
    replaced: int  # characters that could not be decoded (U+FFFD)
    error: str | None = None  # short code when extraction failed; then text may be ""
    # The class of what stopped the parser (e.g. PanicException from a Rust parser), for the one structured
    # log event that replaces the child's raw stderr; never stored with the record.
    error_class: str | None = None


@dataclass(frozen=True)
class ExtractLimits:
    max_seconds: float = 20.0
    max_output_chars: int = 2_000_000
    max_uncompressed: int = 200 * 1024 * 1024
    # The child's address space: beside the daemon's own ~250 MB at the worst (a 20 MiB message) the process
    # tree stays under 512 MB (issue 16; BENCHMARKS.md "Hostile input"). A 100,000-row sheet needs < 256 MiB.
    max_memory_bytes: int = 384 * 1024 * 1024
    max_sheet_cells: int = 100_000  # cells read from one sheet; more: the sheet is cut, error limit:sheet_cells
    # Set per attachment by the caller when the message's own budget is smaller than max_output_chars:
    # a cut then says limit:message_chars, not limit:attachment_chars.
    message_chars_left: int | None = None

    @property
    def zip(self) -> ZipLimits:
        """The zip guard's numbers for extraction.

        They differ from the classifier's (daemon.stages.classify.ContainerLimits) on purpose: the
        classifier reads only small XML parts and OLE heads to decide a type, so it caps each member
        at 4 MiB and refuses extreme compression ratios; an extractor reads whole document parts (a
        long comment's document.xml or sheet), so its only caps are the member count and the total
        budget. Whatever reaches extraction in the pipeline has already passed the classifier's.
        """
        return ZipLimits(max_members=10_000, max_uncompressed=self.max_uncompressed)


class ExtractError(Exception):
    """A format parser gave up; `code` becomes Extraction.error."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


# The guards' stop codes in the words of Extraction.error: every exceeded number is "too_large".
_ERROR_OF_STOP: dict[StopCode, str] = {
    "time": "timeout",
    "members": "too_large",
    "uncompressed": "too_large",
    "ratio": "too_large",
    "member_read": "too_large",
    "corrupt": "corrupt",
    "encrypted": "encrypted",
}


def extract_stop(code: StopCode) -> ExtractError:
    """The ExtractError a guard raises in a parser (daemon.guards names the stop, we name the code)."""
    return ExtractError(_ERROR_OF_STOP[code])


def start_deadline(seconds: float) -> Deadline:
    """The deadline the parsers check in their long loops; it raises ExtractError("timeout")."""
    return Deadline(seconds, extract_stop)


def open_zip(data: bytes, limits: ZipLimits, deadline: Deadline) -> BoundedZip:
    """The one bounded-zip guard, with ExtractError codes ("too_large", "corrupt", "encrypted")."""
    return BoundedZip(data, limits, deadline, extract_stop)


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


def ole_stream(ole: object, name: str, file_size: int) -> bytes:
    """The stream `name` of an OLE2 file (olefile), refused as corrupt when its size, the size of the root
    entry's mini stream that small streams live in, or the mini FAT that the header declares, is larger than
    the file: olefile follows a declared size sector by sector, so a 1.5 KB file that declares gigabytes took
    45 s and gigabytes of memory (found by the fuzzer, fuzz/crashes/jtdc-olefile-root-size*). Every stream's
    sectors are in the file: a larger size is a lie."""
    root = getattr(ole, "root", None)
    if root is None or root.size > file_size or ole.get_size(name) > file_size \
            or _minifat_bytes(ole) > file_size:  # type: ignore[attr-defined]
        raise ExtractError("corrupt")
    return bytes(ole.openstream(name).read())  # type: ignore[attr-defined]


def _minifat_bytes(ole: object) -> int:
    """What the header says the mini FAT takes: olefile reads that much before the first small stream."""
    return int(ole.num_mini_fat_sectors) * int(ole.sectorsize)  # type: ignore[attr-defined]
