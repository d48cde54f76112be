"""Attachment classifier: what a part IS (by content) and whether the consultation allows it.

A pure function over bytes and the rules' ``[attachments.kinds]`` table. It looks inside
containers itself (zip/OOXML, OLE2) under explicit limits, asks olevba about macros and
msoffcrypto about legacy encryption, and never trusts the file name or the declared MIME type
for the type. The file name only supplies the extension that the policy is matched against.

Never raises: an unexpected failure is ``not_allowed`` with ``classify_error:<ExceptionClass>``.
"""

from __future__ import annotations

import io
import logging
import re
import struct
import time
import unicodedata
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import defusedxml.ElementTree as DET
import magic
import msoffcrypto
import olefile
from oletools.olevba import VBA_Parser

__all__ = ["Classification", "ContainerLimits", "classify"]

# oletools, olefile and msoffcrypto log (and oletools warns) about every odd file. The intake log
# is ours: their chatter would carry nothing we act on.
for _name in ("olevba", "ftguess", "oleobj", "olefile", "msoffcrypto", "crypto", "rtfobj", "oletools"):
    logging.getLogger(_name).setLevel(logging.CRITICAL + 1)


@dataclass(frozen=True)
class ContainerLimits:
    max_members: int = 10_000  # zip entries / OLE2 directory entries
    max_uncompressed: int = 200 * 1024 * 1024  # total declared uncompressed bytes of a zip
    max_member_read: int = 4 * 1024 * 1024  # at most this many bytes decompressed from one member we read
    max_depth: int = 2  # nesting of containers we open ourselves
    max_seconds: float = 10.0  # wall time budget per part (checked between steps)


@dataclass(frozen=True)
class Classification:
    kind: str  # "word" | "excel" | "text" | "ichitaro" | "other"
    format: str  # fine-grained: "doc", "docx", "xlsx", "jtd", "pdf", "elf", "zip", ...
    mime: str  # libmagic on the WHOLE part
    verdict: str  # "allowed" | "not_allowed" | "type_mismatch" | "macro" | "encrypted"
    detail: str | None = None  # short machine-ish reason; never the file name


# The formats of a kind that are plain documents. Templates, binary workbooks and the like keep
# their family's kind but are not allowed unless the rules list their format as an extension too.
_PLAIN_FORMATS: dict[str, frozenset[str]] = {
    "word": frozenset({"doc", "docx"}),
    "excel": frozenset({"xls", "xlsx"}),
    "text": frozenset({"txt"}),
    "ichitaro": frozenset({"jtd", "jtdc", "ichitaro-dos"}),
}

# A deflated member larger than this whose ratio is above _MAX_RATIO is treated as a bomb.
_RATIO_MIN_SIZE = 1024 * 1024
_MAX_RATIO = 200

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

# main part content type (lower case) -> (kind, format)
_OOXML_MAIN: dict[str, tuple[str, str]] = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml": ("word", "docx"),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml": ("word", "dotx"),
    "application/vnd.ms-word.document.macroenabled.main+xml": ("word", "docm"),
    "application/vnd.ms-word.template.macroenabledtemplate.main+xml": ("word", "dotm"),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml": ("excel", "xlsx"),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.template.main+xml": ("excel", "xltx"),
    "application/vnd.ms-excel.sheet.macroenabled.main+xml": ("excel", "xlsm"),
    "application/vnd.ms-excel.template.macroenabled.main+xml": ("excel", "xltm"),
    "application/vnd.ms-excel.addin.macroenabled.main+xml": ("excel", "xlam"),
    "application/vnd.ms-excel.sheet.binary.macroenabled.main": ("excel", "xlsb"),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml": ("other", "pptx"),
    "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml": ("other", "ppsx"),
    "application/vnd.openxmlformats-officedocument.presentationml.template.main+xml": ("other", "potx"),
    "application/vnd.ms-powerpoint.presentation.macroenabled.main+xml": ("other", "pptm"),
    "application/vnd.ms-powerpoint.slideshow.macroenabled.main+xml": ("other", "ppsm"),
    "application/vnd.ms-powerpoint.template.macroenabled.main+xml": ("other", "potm"),
    "application/vnd.ms-powerpoint.addin.macroenabled.main+xml": ("other", "ppam"),
}
# Formats whose content type says "macro-enabled". xlsb is absent on purpose: every .xlsb has the
# macroEnabled main type, with or without a VBA project.
_MACRO_ENABLED_FORMATS = frozenset({"docm", "dotm", "xlsm", "xltm", "xlam", "pptm", "ppsm", "potm", "ppam"})
_VBA_PROJECT_CT = "application/vnd.ms-office.vbaproject"
_CT_NS = "{http://schemas.openxmlformats.org/package/2006/content-types}"
_REL_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"

_ODF_TYPES = {
    b"application/vnd.oasis.opendocument.text": "odt",
    b"application/vnd.oasis.opendocument.spreadsheet": "ods",
    b"application/vnd.oasis.opendocument.presentation": "odp",
}

_ICHITARO_CLSID_PREFIXES = ("78597000-", "78597001-", "78597002-")

# C0 controls except TAB LF FF CR, DEL and C1 controls: not in a text a person typed.
_STRAY_CONTROLS = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
# ISO-2022-JP designations (JIS X 0208 1978/1983, ASCII, JIS-Roman, half-width kana, JIS X 0212,
# JIS X 0213) that may follow an ESC.
_ISO2022_ESCAPES = re.compile(rb"\x1b(?:\$[@B]|\([BJI]|\$\([DOPQ]|&@\x1b\$B)")

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


# ---------------------------------------------------------------------------------------------
# internal signalling


class _Stop(Exception):  # internal control flow, never escapes classify()
    """Analysis stops with a named reason (limits:..., corrupt:...)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass
class _Content:
    kind: str
    format: str
    encrypted: str | None = None  # detail when the content is encrypted
    macro: str | None = None  # detail when the content carries macros
    problem: str | None = None  # limits:... / corrupt:... : could not be judged
    charset: str | None = None  # for text


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self._end:
            raise _Stop("limits:time")


# ---------------------------------------------------------------------------------------------
# public entry point


def classify(
    data: bytes,
    filename: str | None,
    declared_mime: str | None,
    allowed: Mapping[str, Sequence[str]],
    limits: ContainerLimits = ContainerLimits(),  # frozen: a safe default
) -> Classification:
    """Decide by content what ``data`` is and whether ``allowed`` permits it.

    ``declared_mime`` is accepted for the pipeline's sake but does not decide anything: the type
    comes from the bytes, the policy from the extension of ``filename``.
    """
    del declared_mime  # deliberately unused: never trust the sender's label for the type
    mime = "application/octet-stream"
    try:
        data = bytes(data)
        mime = _libmagic_mime(data)
        if not data:
            return Classification("other", "empty", mime, "not_allowed", "empty")
        content = _detect(data, mime, limits)
        return _decide(content, mime, _extension(filename), allowed)
    except Exception as exc:  # the pipeline must never see an exception from here
        return Classification("other", "unknown", mime, "not_allowed", f"classify_error:{type(exc).__name__}")


# ---------------------------------------------------------------------------------------------
# policy


def _extension(filename: str | None) -> str | None:
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


def _decide(c: _Content, mime: str, ext: str | None, allowed: Mapping[str, Sequence[str]]) -> Classification:
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


# ---------------------------------------------------------------------------------------------
# detection


def _libmagic_mime(data: bytes) -> str:
    try:
        return str(magic.from_buffer(data, mime=True)) if data else "application/x-empty"
    except Exception:
        return "application/octet-stream"


def _detect(data: bytes, mime: str, limits: ContainerLimits) -> _Content:
    deadline = _Deadline(limits.max_seconds)
    if data.startswith(_OLE_MAGIC):
        return _guarded(lambda: _detect_ole(data, limits, deadline), "ole2", "corrupt:ole2")
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return _guarded(lambda: _detect_zip(data, limits, deadline), "zip", "corrupt:zip")
    if data.startswith(b"DOC\x00"):
        return _Content("ichitaro", "ichitaro-dos")
    if b"%PDF-" in data[:1024]:
        return _Content("other", "pdf")
    if data.startswith(b"{\\rt"):
        return _Content("other", "rtf")
    if data.startswith(b"\x7fELF"):
        return _Content("other", "elf")
    if data.startswith(b"MZ"):
        return _Content("other", "pe" if _is_pe(data) else "msdos")
    if data[:4] in (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe"):
        return _Content("other", "macho")
    if data.startswith(b"#!"):
        return _Content("other", "script")
    markup = _markup_format(data, mime)
    if markup is not None:
        return _Content("other", markup)
    deadline.check()
    # Our own text test wins over libmagic's weaker guesses (a short EUC-JP text is an
    # "OpenPGP Public Key" to it), but only now that the binary signatures are ruled out.
    charset = _text_charset(data)
    if charset is not None:
        return _Content("text", "txt", charset=charset)
    top = mime.split("/", 1)[0]
    if top in ("image", "audio", "video", "font"):
        return _Content("other", top)
    return _Content("other", _MIME_FORMATS.get(mime, "unknown"))


def _guarded(fn: Callable[[], _Content], fmt: str, corrupt: str) -> _Content:
    """Run a container analysis; a broken container is a named verdict, not an error."""
    try:
        return fn()
    except _Stop as stop:
        return _Content("other", fmt, problem=stop.detail)
    except MemoryError:
        return _Content("other", fmt, problem="limits:memory")
    except Exception:
        return _Content("other", fmt, problem=corrupt)


def _is_pe(data: bytes) -> bool:
    if len(data) < 0x40:
        return False
    (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
    return 0 < e_lfanew <= len(data) - 4 and data[e_lfanew : e_lfanew + 4] == b"PE\x00\x00"


def _markup_format(data: bytes, mime: str) -> str | None:
    head = data[:4096]
    for bom in (b"\xef\xbb\xbf",):
        if head.startswith(bom):
            head = head[len(bom) :]
    head = head.lstrip(b" \t\r\n\x0c").lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "html"
    if head.startswith(b"<svg"):
        return "image"
    if head.startswith(b"<?xml"):
        if b"<svg" in head:
            return "image"
        if b"<html" in head:
            return "html"
        return "xml"
    if head.startswith(b"<") and mime in ("text/html", "text/xml", "application/xml"):
        return "html" if mime == "text/html" else "xml"
    if head.startswith(b"mime-version:") and b"multipart" in head:
        return "mht"  # Word/Excel "single file web page"; may carry VBA
    return None


def _text_charset(data: bytes) -> str | None:
    """The charset under which ``data`` is clean text, or None if it is not text."""
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig" if _clean(data[3:], "utf-8") else None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16" if _clean(data, "utf-16") else None
    if b"\x00" in data:
        return None
    if b"\x1b" in data:
        if max(data) >= 0x80:
            return None
        for codec in ("iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2", "iso2022_jp_2004"):
            if _clean(data, codec):
                return "iso-2022-jp"
        # CP50220/50221 extensions (①, ㈱, ...) that no Python codec decodes: judge the structure
        stripped = _ISO2022_ESCAPES.sub(b"", data)
        if b"\x1b" not in stripped and not _STRAY_CONTROLS.search(stripped.decode("ascii")):
            return "iso-2022-jp"
        return None
    for codec, label in (("utf-8", "utf-8"), ("euc_jp", "euc-jp"), ("cp932", "cp932")):
        if _clean(data, codec):
            return label
    return None


def _clean(data: bytes, codec: str) -> bool:
    try:
        text = data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return False
    return _STRAY_CONTROLS.search(text) is None


# ---------------------------------------------------------------------------------------------
# OLE2


def _detect_ole(data: bytes, limits: ContainerLimits, deadline: _Deadline) -> _Content:
    if limits.max_depth < 1:
        raise _Stop("limits:depth")
    with olefile.OleFileIO(io.BytesIO(data), path_encoding=None) as ole:
        if len(ole.direntries) > limits.max_members:
            raise _Stop("limits:members")
        if _ole_declared_stream_bytes(ole) > max(limits.max_uncompressed, 2 * len(data)):
            # streams aliasing the same sectors: olevba would read every one of them in full
            raise _Stop("limits:uncompressed")
        deadline.check()
        clsid = (ole.root.clsid or "").upper() if ole.root is not None else ""
        if ole.exists("EncryptionInfo") or ole.exists("EncryptedPackage"):
            return _Content("other", "encrypted-ooxml", encrypted="encryption_info")
        if ole.exists("WordDocument"):
            kind, fmt = "word", "doc"
        elif ole.exists("Workbook") or ole.exists("Book"):
            kind, fmt = "excel", "xls"
        elif ole.exists("JSCompDocument") or clsid.startswith("78597002-"):
            kind, fmt = "ichitaro", "jtdc"
        elif ole.exists("DocumentText") or clsid.startswith(_ICHITARO_CLSID_PREFIXES):
            kind, fmt = "ichitaro", "jtd"
        elif ole.exists("PowerPoint Document"):
            kind, fmt = "other", "ppt"
        else:
            kind, fmt = "other", "ole2"
        legacy_encrypted = fmt in ("doc", "xls", "ppt") and _legacy_encrypted(data, ole, fmt)
    deadline.check()
    if legacy_encrypted:
        return _Content(kind, fmt, encrypted="legacy_encryption")
    macro = _olevba_macros(data, excel=fmt == "xls")
    deadline.check()
    return _Content(kind, fmt, macro=macro)


def _ole_declared_stream_bytes(ole: olefile.OleFileIO) -> int:
    """Sum of the sizes that every directory entry of type stream declares, orphans included."""
    fp = ole.directory_fp
    fp.seek(0)
    directory = fp.read()
    wide = ole.sectorsize != 512  # version 3 files ignore the size's high dword
    total = 0
    for off in range(0, len(directory) - 127, 128):
        if directory[off + 66] == olefile.STGTY_STREAM:
            total += struct.unpack_from("<Q" if wide else "<I", directory, off + 120)[0]
    return total


def _legacy_encrypted(data: bytes, ole: olefile.OleFileIO, fmt: str) -> bool:
    """FIB fEncrypted (Word), FILEPASS (Excel), CryptSession (PowerPoint), via msoffcrypto."""
    try:
        return bool(msoffcrypto.OfficeFile(io.BytesIO(data)).is_encrypted())
    except Exception:
        pass
    # msoffcrypto could not parse it: look at the one flag ourselves rather than guess "clear".
    if fmt == "doc":
        fib = ole.openstream("WordDocument").read(12)
        if len(fib) < 12:
            raise _Stop("corrupt:ole2")
        (flags,) = struct.unpack_from("<H", fib, 10)
        return bool(flags & 0x0100)
    if fmt == "xls":
        stream = "Workbook" if ole.exists("Workbook") else "Book"
        return _biff_has_filepass(ole.openstream(stream).read(1024 * 1024))
    return False


def _biff_has_filepass(buf: bytes) -> bool:
    pos = 0
    while pos + 4 <= len(buf):
        rec, size = struct.unpack_from("<HH", buf, pos)
        if rec == 0x002F:  # FILEPASS
            return True
        if rec == 0x000A and pos > 0:  # EOF of the globals substream
            return False
        pos += 4 + size
    return False


def _olevba_macros(data: bytes, *, excel: bool) -> str | None:
    """'vba_project' / 'xlm_macro' when olevba finds them in an OLE2 file, else None."""
    parser = VBA_Parser("attachment", data=data)  # a fixed name: the type must not depend on it
    try:
        if parser.detect_vba_macros():
            return "vba_project"
        if excel and parser.detect_xlm_macros():
            return "xlm_macro"
        return None
    finally:
        parser.close()


# ---------------------------------------------------------------------------------------------
# zip / OOXML


@dataclass
class _ZipStats:
    members: int = 0
    uncompressed: int = 0
    encrypted: bool = False


def _zip_scan(data: bytes, limits: ContainerLimits, deadline: _Deadline) -> _ZipStats:
    """Walk the central directory ourselves, stopping at the first limit, before zipfile reads it."""
    eocd = data.rfind(b"PK\x05\x06", max(0, len(data) - (22 + 0xFFFF)))
    if eocd < 0 or eocd + 22 > len(data):
        raise _Stop("corrupt:zip")
    cd_size = struct.unpack_from("<I", data, eocd + 12)[0]
    cd_end = eocd
    z64 = eocd - 20 - 56
    if eocd >= 20 and data[eocd - 20 : eocd - 16] == b"PK\x06\x07" and z64 >= 0:
        if data[z64 : z64 + 4] != b"PK\x06\x06":
            raise _Stop("corrupt:zip")
        cd_size = struct.unpack_from("<Q", data, z64 + 40)[0]
        cd_end = z64
    pos = cd_end - cd_size
    if pos < 0:
        raise _Stop("corrupt:zip")
    stats = _ZipStats()
    while pos < cd_end:
        if data[pos : pos + 4] != b"PK\x01\x02" or pos + 46 > cd_end:
            raise _Stop("corrupt:zip")
        flags, method = struct.unpack_from("<HH", data, pos + 8)
        csize, usize, n_name, n_extra, n_comment = struct.unpack_from("<IIHHH", data, pos + 20)
        if 0xFFFFFFFF in (csize, usize):
            usize, csize = _zip64_sizes(data[pos + 46 + n_name : pos + 46 + n_name + n_extra], usize, csize)
        stats.members += 1
        if stats.members > limits.max_members:
            raise _Stop("limits:members")
        stats.uncompressed += usize
        if stats.uncompressed > limits.max_uncompressed:
            raise _Stop("limits:uncompressed")
        if method != 0 and usize > _RATIO_MIN_SIZE and usize > _MAX_RATIO * max(csize, 1):
            raise _Stop("limits:ratio")
        if flags & 0x1:
            stats.encrypted = True
        pos += 46 + n_name + n_extra + n_comment
        if stats.members % 1000 == 0:
            deadline.check()
    return stats


def _zip64_sizes(extra: bytes, usize: int, csize: int) -> tuple[int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        if tag == 0x0001:
            body = extra[pos + 4 : pos + 4 + size]
            off = 0
            if usize == 0xFFFFFFFF and off + 8 <= len(body):
                usize = struct.unpack_from("<Q", body, off)[0]
                off += 8
            if csize == 0xFFFFFFFF and off + 8 <= len(body):
                csize = struct.unpack_from("<Q", body, off)[0]
            return usize, csize
        pos += 4 + size
    return usize, csize


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ContainerLimits) -> bytes:
    if info.file_size > limits.max_member_read:
        raise _Stop("limits:member_read")
    with zf.open(info) as fh:
        buf = fh.read(limits.max_member_read + 1)
    if len(buf) > limits.max_member_read:
        raise _Stop("limits:member_read")
    return buf


def _detect_zip(data: bytes, limits: ContainerLimits, deadline: _Deadline) -> _Content:
    if limits.max_depth < 1:
        raise _Stop("limits:depth")
    stats = _zip_scan(data, limits, deadline)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:  # _zip_scan read the same directory; belt and braces
            raise _Stop("limits:members")
        by_name = {i.filename.lower(): i for i in infos}
        ct_info = by_name.get("[content_types].xml")
        if ct_info is None:
            if stats.encrypted:
                return _Content("other", "zip", encrypted="zip_encrypted")
            mimetype = by_name.get("mimetype")
            if mimetype is not None and not mimetype.flag_bits & 0x1:
                odf = _ODF_TYPES.get(_read_member(zf, mimetype, limits).strip())
                if odf is not None:
                    return _Content("other", odf)
            return _Content("other", "zip")
        if stats.encrypted:
            return _Content("other", "ooxml", encrypted="zip_encrypted")
        deadline.check()
        defaults, overrides = _content_types(_read_member(zf, ct_info, limits))
        main_ct = _main_content_type(zf, by_name, defaults, overrides, limits)
        kind, fmt = _OOXML_MAIN.get(main_ct or "", ("other", "ooxml"))
        deadline.check()
        macro = _ooxml_macros(zf, infos, fmt, defaults, overrides, limits, deadline)
    return _Content(kind, fmt, macro=macro)


def _content_types(xml: bytes) -> tuple[dict[str, str], dict[str, str]]:
    root = DET.fromstring(xml)
    defaults: dict[str, str] = {}
    overrides: dict[str, str] = {}
    for el in root:
        tag = el.tag.removeprefix(_CT_NS) if isinstance(el.tag, str) else ""
        ct = (el.get("ContentType") or "").strip().lower()
        if tag == "Default":
            defaults[(el.get("Extension") or "").lower()] = ct
        elif tag == "Override":
            overrides[(el.get("PartName") or "").lower()] = ct
    return defaults, overrides


def _main_content_type(
    zf: zipfile.ZipFile,
    by_name: dict[str, zipfile.ZipInfo],
    defaults: dict[str, str],
    overrides: dict[str, str],
    limits: ContainerLimits,
) -> str | None:
    """The content type of the package's officeDocument target, else the first known main type."""
    rels = by_name.get("_rels/.rels")
    if rels is not None:
        for el in DET.fromstring(_read_member(zf, rels, limits)):
            if el.tag != f"{_REL_NS}Relationship" or not (el.get("Type") or "").endswith("/officeDocument"):
                continue
            part = "/" + (el.get("Target") or "").lstrip("/").lower()
            ct = overrides.get(part) or defaults.get(part.rsplit(".", 1)[-1] if "." in part else "")
            if ct in _OOXML_MAIN:
                return ct
    for ct in overrides.values():
        if ct in _OOXML_MAIN:
            return ct
    return None


def _ooxml_macros(
    zf: zipfile.ZipFile,
    infos: list[zipfile.ZipInfo],
    fmt: str,
    defaults: dict[str, str],
    overrides: dict[str, str],
    limits: ContainerLimits,
    deadline: _Deadline,
) -> str | None:
    types = set(defaults.values()) | set(overrides.values())
    names = [i.filename.lower() for i in infos]
    if _VBA_PROJECT_CT in types or any(n.endswith("vbaproject.bin") for n in names):
        return "vba_project"
    if any("macrosheet" in t for t in types) or any(n.startswith("xl/macrosheets/") for n in names):
        return "xlm_macro"
    # olevba's way: any member that is itself an OLE2 file may hold a (renamed) VBA project
    for info in infos:
        if info.file_size < olefile.MINIMAL_OLEFILE_SIZE:
            continue
        deadline.check()
        with zf.open(info) as fh:
            head = fh.read(len(_OLE_MAGIC))
        if head != _OLE_MAGIC:
            continue
        if limits.max_depth < 2:
            raise _Stop("limits:depth")
        member = _read_member(zf, info, limits)
        try:
            found = _olevba_macros(member, excel=False)
        except Exception:
            found = None  # an embedded object olevba cannot open holds no VBA project it can see
        if found:
            return found
    if fmt in _MACRO_ENABLED_FORMATS:
        return "macro_enabled"
    return None
