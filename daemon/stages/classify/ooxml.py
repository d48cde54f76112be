"""Zip containers: OOXML (Word, Excel, PowerPoint; macro-enabled or not), ODF and plain zip.

Opened through the shared bounded zip (daemon.guards) with the classifier's limits: the central
directory is walked and counted before zipfile reads it, and each member we read is capped.
"""

from __future__ import annotations

import zipfile

import defusedxml.ElementTree as DET
import olefile

from daemon.guards import BoundedZip, Deadline

from .content import Content
from .limits import ContainerLimits, _Stop, open_zip
from .ole import OLE_MAGIC, olevba_macros

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


def detect_zip(data: bytes, limits: ContainerLimits, deadline: Deadline) -> Content:
    if limits.max_depth < 1:
        raise _Stop("limits:depth")
    with open_zip(data, limits, deadline) as zf:
        infos = zf.infos
        by_name = {i.filename.lower(): i for i in infos}
        ct_info = by_name.get("[content_types].xml")
        if ct_info is None:
            if zf.directory.encrypted:
                return Content("other", "zip", encrypted="zip_encrypted")
            mimetype = by_name.get("mimetype")
            if mimetype is not None and not mimetype.flag_bits & 0x1:
                odf = _ODF_TYPES.get(zf.read(mimetype).strip())
                if odf is not None:
                    return Content("other", odf)
            return Content("other", "zip")
        if zf.directory.encrypted:
            return Content("other", "ooxml", encrypted="zip_encrypted")
        deadline.check()
        defaults, overrides = _content_types(zf.read(ct_info))
        main_ct = _main_content_type(zf, by_name, defaults, overrides)
        kind, fmt = _OOXML_MAIN.get(main_ct or "", ("other", "ooxml"))
        deadline.check()
        macro = _ooxml_macros(zf, fmt, defaults, overrides, limits, deadline)
    return Content(kind, fmt, macro=macro)


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
    zf: BoundedZip,
    by_name: dict[str, zipfile.ZipInfo],
    defaults: dict[str, str],
    overrides: dict[str, str],
) -> str | None:
    """The content type of the package's officeDocument target, else the first known main type."""
    rels = by_name.get("_rels/.rels")
    if rels is not None:
        for el in DET.fromstring(zf.read(rels)):
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
    zf: BoundedZip,
    fmt: str,
    defaults: dict[str, str],
    overrides: dict[str, str],
    limits: ContainerLimits,
    deadline: Deadline,
) -> str | None:
    types = set(defaults.values()) | set(overrides.values())
    names = [i.filename.lower() for i in zf.infos]
    if _VBA_PROJECT_CT in types or any(n.endswith("vbaproject.bin") for n in names):
        return "vba_project"
    if any("macrosheet" in t for t in types) or any(n.startswith("xl/macrosheets/") for n in names):
        return "xlm_macro"
    # olevba's way: any member that is itself an OLE2 file may hold a (renamed) VBA project
    for info in zf.infos:
        if info.file_size < olefile.MINIMAL_OLEFILE_SIZE:
            continue
        deadline.check()
        if zf.head(info, len(OLE_MAGIC)) != OLE_MAGIC:
            continue
        if limits.max_depth < 2:
            raise _Stop("limits:depth")
        member = zf.read(info)
        try:
            found = olevba_macros(member, excel=False)
        except Exception:
            found = None  # an embedded object olevba cannot open holds no VBA project it can see
        if found:
            return found
    if fmt in _MACRO_ENABLED_FORMATS:
        return "macro_enabled"
    return None
