"""Ichitaro (一太郎) documents.

* OLE2 (.jtd .jtt .jfw .jvw): stream `DocumentText` = "SsmgV.01" header, then one or more
  segments "TextV.01" + big-endian uint32 count of UTF-16 code units + UTF-16BE text.
* Compressed OLE2 (.jtdc .jttc): stream `JSCompDocument` = a "JustCompressedDocument" header,
  then an LHA (-lh5-) archive holding one normal OLE2 .jtd.
* Ichitaro 5/6 (.jaw .jtw .jbw .juw, magic "DOC\\0"): 512-byte blocks; a directory of 64-byte
  entries at 0x600; the entry of type 2 is the text stream, which starts at a block boundary
  with a little-endian uint32 length (including itself) and holds cp932 text in which
  0xFE 0x41 ends a line (other 0xFE xx pairs are layout codes). Found from the real files.
* Ichitaro 4 (.jsw, version word 1): the text is not stored as plain cp932: reported as
  "unsupported:ichitaro4" (needs manual review).
"""

from __future__ import annotations

import io
import struct

from daemon.guards import Deadline

from ._common import ExtractError, Extraction, ole_stream

_KEEP_CONTROLS = {"\n", "\t"}


def _clean_utf16(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(ch for ch in text if ch >= " " or ch in _KEEP_CONTROLS)


def document_text(stream: bytes, deadline: Deadline) -> str:
    """The text of a DocumentText stream."""
    parts: list[str] = []
    pos = stream.find(b"TextV.01")
    if pos < 0:
        raise ExtractError("corrupt")
    while pos >= 0:
        deadline.check()
        if pos + 12 > len(stream):
            raise ExtractError("corrupt")
        count = struct.unpack_from(">I", stream, pos + 8)[0]
        raw = stream[pos + 12 : pos + 12 + 2 * count]
        if len(raw) != 2 * count:
            raise ExtractError("corrupt")
        parts.append(raw.decode("utf-16-be", errors="replace"))
        pos = stream.find(b"TextV.01", pos + 12 + 2 * count)
    return _clean_utf16("".join(parts)).rstrip("\n")


def _ole_document_text(data: bytes, deadline: Deadline) -> str:
    import olefile

    try:
        ole = olefile.OleFileIO(data)
        if not ole.exists("DocumentText"):
            raise ExtractError("corrupt")
        stream = ole_stream(ole, "DocumentText", len(data))
    except ExtractError:
        raise
    except Exception as exc:  # olefile raises OSError, struct.error, IndexError... on junk
        raise ExtractError("corrupt") from exc
    return document_text(stream, deadline)


def extract_jtd(data: bytes, deadline: Deadline) -> Extraction:
    text = _ole_document_text(data, deadline)
    return Extraction(text=text, tables=[], decoder="ichitaro-documenttext", replaced=text.count("\ufffd"))


def extract_jtdc(data: bytes, deadline: Deadline, max_uncompressed: int) -> Extraction:
    import lhafile
    import olefile

    try:
        ole = olefile.OleFileIO(data)
        if not ole.exists("JSCompDocument"):
            if ole.exists("DocumentText"):  # saved uncompressed after all
                return extract_jtd(data, deadline)
            raise ExtractError("corrupt")
        stream = ole_stream(ole, "JSCompDocument", len(data))
    except ExtractError:
        raise
    except Exception as exc:
        raise ExtractError("corrupt") from exc
    start = stream.find(b"-lh")
    if start < 2:
        raise ExtractError("corrupt")
    try:
        archive = lhafile.LhaFile(io.BytesIO(stream[start - 2 :]))
        infos = archive.infolist()
        if not infos:
            raise ExtractError("corrupt")
        if sum(info.file_size for info in infos) > max_uncompressed:
            raise ExtractError("too_large")
        deadline.check()
        inner = archive.read(infos[0].filename)
    except ExtractError:
        raise
    except Exception as exc:  # lhafile: BadLhafile, RuntimeError, struct/index errors
        raise ExtractError("corrupt") from exc
    deadline.check()
    text = _ole_document_text(inner, deadline)
    return Extraction(text=text, tables=[], decoder="ichitaro-lha", replaced=text.count("\ufffd"))


# --- Ichitaro 4-6 ("DOC\0") ------------------------------------------------------------------

_BLOCK = 0x200
_DIR = 0x600
_TEXT_TYPE = 2


def _dos_text_block(data: bytes) -> bytes:
    """The bytes of the text stream of an Ichitaro 5/6 file."""
    length = None
    for off in range(_DIR, min(_DIR + _BLOCK, len(data) - 64 + 1), 64):
        entry = data[off : off + 64]
        if struct.unpack_from("<H", entry, 0)[0] == 1 and struct.unpack_from("<H", entry, 2)[0] == _TEXT_TYPE:
            # the length sits at +0x0C (Ichitaro 5) or +0x10 (Ichitaro 6, 32-bit fields)
            length = [struct.unpack_from("<I", entry, k)[0] for k in (0x0C, 0x10)]
            break
    if length is None:
        raise ExtractError("corrupt")
    # the stream starts at a block boundary with its own length: find the block that matches
    for off in range(_DIR + _BLOCK, len(data) - 4 + 1, _BLOCK):
        head = struct.unpack_from("<I", data, off)[0]
        if head in length and head >= 4 and off + head <= len(data):
            return data[off + 4 : off + head]
    raise ExtractError("corrupt")


def decode_dos_text(raw: bytes) -> tuple[str, int]:
    """cp932 text with 0xFE xx layout codes (0xFE41 = end of line)."""
    out: list[str] = []
    replaced = 0
    run_start = i = 0
    n = len(raw)

    def flush(end: int) -> None:
        nonlocal replaced
        if end > run_start:
            part = raw[run_start:end].decode("cp932", errors="replace")
            replaced += part.count("\ufffd")
            out.append(part)

    while i < n:
        b = raw[i]
        if b == 0xFE and i + 1 < n:
            flush(i)
            if raw[i + 1] == 0x41:
                out.append("\n")
            i += 2
            run_start = i
        elif (0x81 <= b <= 0x9F or 0xE0 <= b <= 0xFC) and i + 1 < n:
            i += 2  # a double-byte character: its trail byte may look like anything
        elif b < 0x20 and b not in (0x09, 0x0A):
            flush(i)
            i += 1
            run_start = i
        else:
            i += 1
    flush(n)
    return "".join(out).rstrip("\n"), replaced


def extract_dos(data: bytes, deadline: Deadline) -> Extraction:
    if len(data) < 0x800 or data[:4] != b"DOC\x00":
        raise ExtractError("corrupt")
    version = struct.unpack_from("<H", data, 0x12)[0]
    if version < 2:
        raise ExtractError("unsupported:ichitaro4")
    deadline.check()
    text, replaced = decode_dos_text(_dos_text_block(data))
    return Extraction(text=text, tables=[], decoder="ichitaro-dos", replaced=replaced)
