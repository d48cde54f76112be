"""OLE2 compound files: Word 97–2003, Excel 97–2003, 一太郎, PowerPoint, encrypted OOXML; their
legacy encryption (through msoffcrypto) and their macros (through olevba)."""

from __future__ import annotations

import io
import logging
import struct

import msoffcrypto
import olefile
from oletools.olevba import VBA_Parser

from daemon.guards import Deadline

from .content import Content
from .limits import ContainerLimits, _Stop

# oletools, olefile and msoffcrypto log (and oletools warns) about every odd file. The intake log
# is ours: their chatter would carry nothing we act on.
for _name in ("olevba", "ftguess", "oleobj", "olefile", "msoffcrypto", "crypto", "rtfobj", "oletools"):
    logging.getLogger(_name).setLevel(logging.CRITICAL + 1)

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

_ICHITARO_CLSID_PREFIXES = ("78597000-", "78597001-", "78597002-")


def detect_ole(data: bytes, limits: ContainerLimits, deadline: Deadline) -> Content:
    if limits.max_depth < 1:
        raise _Stop("limits:depth")
    with olefile.OleFileIO(io.BytesIO(data), path_encoding=None) as ole:
        if len(ole.direntries) > limits.max_members:
            raise _Stop("limits:members")
        streams, largest = _ole_declared_sizes(ole)
        if streams > max(limits.max_uncompressed, 2 * len(data)):
            # streams aliasing the same sectors: olevba would read every one of them in full
            raise _Stop("limits:uncompressed")
        root_size = ole.root.size if ole.root is not None else 0
        if max(largest, root_size) > len(data) or ole.num_mini_fat_sectors * ole.sectorsize > len(data):
            # One stream (or the root's mini stream, or the header's mini FAT, which every small stream is
            # read through) larger than the file: olefile follows the declared size sector by sector (45 s
            # and gigabytes for 1.5 KB).
            raise _Stop("limits:uncompressed")
        deadline.check()
        clsid = (ole.root.clsid or "").upper() if ole.root is not None else ""
        if ole.exists("EncryptionInfo") or ole.exists("EncryptedPackage"):
            return Content("other", "encrypted-ooxml", encrypted="encryption_info")
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
        return Content(kind, fmt, encrypted="legacy_encryption")
    macro = olevba_macros(data, excel=fmt == "xls")
    deadline.check()
    return Content(kind, fmt, macro=macro)


def _ole_declared_sizes(ole: olefile.OleFileIO) -> tuple[int, int]:
    """(sum of the sizes that every stream entry declares, orphans included; the largest size any stream or
    the root entry declares)."""
    fp = ole.directory_fp
    fp.seek(0)
    directory = fp.read()
    wide = ole.sectorsize != 512  # version 3 files ignore the size's high dword
    total = largest = 0
    for off in range(0, len(directory) - 127, 128):
        kind = directory[off + 66]
        # The first entry is the root whatever its type byte says: olefile reads the mini stream through it
        # (a root typed 20 declaring 1.5 GB took 3 GB of memory, found by the fuzzer).
        if kind in (olefile.STGTY_STREAM, olefile.STGTY_ROOT) or off == 0:
            size = struct.unpack_from("<Q" if wide else "<I", directory, off + 120)[0]
            largest = max(largest, size)
            if kind == olefile.STGTY_STREAM:
                total += size
    return total, largest


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


def olevba_macros(data: bytes, *, excel: bool) -> str | None:
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
