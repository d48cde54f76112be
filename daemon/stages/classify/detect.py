"""Detection: what a part IS, from its bytes alone; dispatches to the format families.

Container signatures (OLE2, zip) first, then fixed signatures of documents and executables, then
markup, and only then our own text test and libmagic's guess.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import magic

from .content import Content
from .limits import ContainerLimits, _Stop, start_deadline
from .markup import markup_format
from .ole import OLE_MAGIC, detect_ole
from .ooxml import detect_zip
from .text import text_charset

_MIME_FORMATS: dict[str, str] = {
    "application/gzip": "gzip",
    "application/x-gzip": "gzip",
    "application/x-bzip2": "bzip2",
    "application/x-xz": "xz",
    "application/x-7z-compressed": "7z",
    "application/x-rar": "rar",
    "application/vnd.rar": "rar",
    "application/x-lzh-compressed": "lzh",
    "application/x-lha": "lzh",
    "application/x-tar": "tar",
    "application/x-mach-binary": "macho",
    "application/x-executable": "executable",
    "application/x-sharedlib": "executable",
    "application/x-dosexec": "msdos",
    "application/java-archive": "zip",
    "application/x-shockwave-flash": "swf",
}


def libmagic_mime(data: bytes) -> str:
    try:
        return str(magic.from_buffer(data, mime=True)) if data else "application/x-empty"
    except Exception:
        return "application/octet-stream"


def detect(data: bytes, mime: str, limits: ContainerLimits) -> Content:
    deadline = start_deadline(limits)
    if data.startswith(OLE_MAGIC):
        return _guarded(lambda: detect_ole(data, limits, deadline), "ole2", "corrupt:ole2")
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return _guarded(lambda: detect_zip(data, limits, deadline), "zip", "corrupt:zip")
    if data.startswith(b"DOC\x00"):
        return Content("ichitaro", "ichitaro-dos")
    if b"%PDF-" in data[:1024]:
        return Content("other", "pdf")
    if data.startswith(b"{\\rt"):
        return Content("other", "rtf")
    if data.startswith(b"\x7fELF"):
        return Content("other", "elf")
    if data.startswith(b"MZ"):
        return Content("other", "pe" if _is_pe(data) else "msdos")
    if data[:4] in (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe"):
        return Content("other", "macho")
    if data.startswith(b"#!"):
        return Content("other", "script")
    markup = markup_format(data, mime)
    if markup is not None:
        return Content("other", markup)
    deadline.check()
    # Our own text test wins over libmagic's weaker guesses (a short EUC-JP text is an
    # "OpenPGP Public Key" to it), but only now that the binary signatures are ruled out.
    charset = text_charset(data)
    if charset is not None:
        return Content("text", "txt", charset=charset)
    top = mime.split("/", 1)[0]
    if top in ("image", "audio", "video", "font"):
        return Content("other", top)
    return Content("other", _MIME_FORMATS.get(mime, "unknown"))


def _guarded(fn: Callable[[], Content], fmt: str, corrupt: str) -> Content:
    """Run a container analysis; a broken container is a named verdict, not an error."""
    try:
        return fn()
    except _Stop as stop:
        return Content("other", fmt, problem=stop.detail)
    except MemoryError:
        return Content("other", fmt, problem="limits:memory")
    except Exception:
        return Content("other", fmt, problem=corrupt)


def _is_pe(data: bytes) -> bool:
    if len(data) < 0x40:
        return False
    (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
    return 0 < e_lfanew <= len(data) - 4 and data[e_lfanew : e_lfanew + 4] == b"PE\x00\x00"
