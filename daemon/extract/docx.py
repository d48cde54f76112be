"""Word 2007+ (.docx): our own walk of the WordprocessingML parts, parsed with defusedxml.

python-docx is not used: it skips text boxes (w:txbxContent), and we want every XML byte to
go through defusedxml after the zip sizes were checked.
"""

from __future__ import annotations

import posixpath
from xml.etree.ElementTree import Element

from daemon.guards import BoundedZip, Deadline, ZipLimits

from ._common import ExtractError, Extraction, open_zip, parse_xml, read_rels

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"

# parts after the body, in this order; headers go before the body, footers last
_NOTE_TYPES = ("footnotes", "endnotes", "comments")


class _Walker:
    def __init__(self, deadline: Deadline) -> None:
        self.lines: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.deadline = deadline
        self.steps = 0

    def tick(self) -> None:
        self.steps += 1
        if self.steps % 2000 == 0:
            self.deadline.check()

    # -- block level -------------------------------------------------------------
    def blocks(self, parent: Element, out: list[str]) -> None:
        """Append the lines of the block-level children of parent (body, cell, text box...)."""
        for child in parent:
            self.tick()
            tag = child.tag
            if tag == W + "p":
                self.paragraph(child, out)
            elif tag == W + "tbl":
                self.table(child, out)
            elif tag in (W + "sdt", W + "customXml", W + "sdtContent", W + "smartTag"):
                self.blocks(child if tag != W + "sdt" else _sdt_content(child), out)
            elif tag == MC + "AlternateContent":
                choice = child.find(MC + "Choice")
                if choice is not None:
                    self.blocks(choice, out)

    def paragraph(self, p: Element, out: list[str]) -> None:
        parts: list[str] = []
        boxes: list[Element] = []
        self.inline(p, parts, boxes)
        out.append("".join(parts))
        for box in boxes:  # text boxes anchored in this paragraph follow it
            self.blocks(box, out)

    def table(self, tbl: Element, out: list[str]) -> None:
        rows: list[list[str]] = []
        for tr in _children(tbl, "tr"):
            cells: list[str] = []
            for tc in _children(tr, "tc"):
                cell_lines: list[str] = []
                self.blocks(tc, cell_lines)
                cells.append("\n".join(cell_lines))
            rows.append(cells)
        self.tables.append(rows)
        for cells in rows:
            out.append("\t".join(c.replace("\n", " ") for c in cells))

    # -- run level -----------------------------------------------------------------
    def inline(self, elem: Element, parts: list[str], boxes: list[Element]) -> None:
        for child in elem:
            self.tick()
            tag = child.tag
            if tag == W + "t":
                parts.append(child.text or "")
            elif tag == W + "tab" or tag == W + "ptab":
                parts.append("\t")
            elif tag in (W + "br", W + "cr"):
                parts.append("\n")
            elif tag == W + "noBreakHyphen":
                parts.append("-")
            elif tag in (W + "delText", W + "instrText", W + "pPr", W + "rPr", W + "del"):
                continue  # deleted text, field codes, properties
            elif tag == W + "txbxContent":
                boxes.append(child)
            elif tag == MC + "AlternateContent":
                # Choice and Fallback carry the same content (e.g. a text box twice): take one
                choice = child.find(MC + "Choice")
                self.inline(choice if choice is not None else child, parts, boxes)
            elif tag == MC + "Fallback":
                continue
            else:
                self.inline(child, parts, boxes)


def _children(elem: Element, name: str) -> list[Element]:
    """Direct children named w:name, looking through content controls / customXml wrappers."""
    out: list[Element] = []
    for child in elem:
        if child.tag == W + name:
            out.append(child)
        elif child.tag in (W + "sdt", W + "customXml"):
            out.extend(_children(_sdt_content(child) if child.tag == W + "sdt" else child, name))
    return out


def _sdt_content(sdt: Element) -> Element:
    content = sdt.find(W + "sdtContent")
    return content if content is not None else Element("empty")


def _main_part(zf: BoundedZip) -> str:
    for rtype, target in read_rels(zf, "_rels/.rels", ""):
        if rtype == "officeDocument":
            return target
    return "word/document.xml"


def extract_docx(data: bytes, deadline: Deadline, zip_limits: ZipLimits) -> Extraction:
    zf = open_zip(data, zip_limits, deadline)
    main = _main_part(zf)
    if not zf.has(main) or not main.endswith(".xml"):
        raise ExtractError("corrupt")
    base = posixpath.dirname(main)
    rels_name = posixpath.join(base, "_rels", posixpath.basename(main) + ".rels")
    rels = read_rels(zf, rels_name, base)

    walker = _Walker(deadline)
    header: list[str] = []
    body: list[str] = []
    notes: list[str] = []
    footer: list[str] = []
    seen: set[str] = set()

    def part(name: str, out: list[str]) -> None:
        if name in seen or not zf.has(name):
            return
        seen.add(name)
        root = parse_xml(zf.read(name))
        deadline.check()
        if name == main:
            if root.tag != W + "document":
                raise ExtractError("corrupt")  # e.g. a .pptx or .xlsx given as .docx
            container = root.find(W + "body")
            if container is None:
                raise ExtractError("corrupt")
            walker.blocks(container, out)
        else:  # hdr, ftr, footnotes (w:footnote children), endnotes, comments
            for child in root:
                if child.tag in (W + "footnote", W + "endnote", W + "comment"):
                    if child.get(W + "type") in ("separator", "continuationSeparator"):
                        continue
                    walker.blocks(child, out)
                else:
                    walker.blocks(root, out)
                    break

    for rtype, target in rels:
        if rtype == "header":
            part(target, header)
    part(main, body)
    for kind in _NOTE_TYPES:
        for rtype, target in rels:
            if rtype == kind:
                part(target, notes)
    for rtype, target in rels:
        if rtype == "footer":
            part(target, footer)

    lines = [line for line in header if line.strip()] + body + notes + [f for f in footer if f.strip()]
    text = "\n".join(lines).strip("\n")
    return Extraction(text=text, tables=walker.tables, decoder="docx", replaced=text.count("\ufffd"))
