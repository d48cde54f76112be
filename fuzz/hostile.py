"""The hostile shapes of issue 16, built at run time (tests, fuzz seeds, the hostile benchmark)."""

from __future__ import annotations

import base64
import io
import zipfile

HEAD = (b"Received: from mx.example.jp by mail.example.go.jp; Sat, 10 Jan 2026 09:15:00 +0900\r\n"
        b"From: hostile@example.jp\r\nTo: security-ai@example.go.jp\r\nSubject: hostile\r\n"
        b"Message-ID: <hostile@example.jp>\r\nDate: Sat, 10 Jan 2026 09:00:00 +0900\r\nMIME-Version: 1.0\r\n")


def nested_multipart(levels: int) -> bytes:
    """`levels` multiparts inside each other, one text leaf at the bottom."""
    out = [HEAD, b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n']
    for i in range(1, levels):
        out.append(b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i - 1, i))
    out.append(b"--b%d\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nbottom\r\n" % (levels - 1))
    out.extend(b"--b%d--\r\n" % i for i in reversed(range(levels)))
    return b"".join(out)


def many_attachments(count: int, body: str = "本編 P.1 について。") -> bytes:
    """A body and `count` small text attachments."""
    out = [HEAD, b'Content-Type: multipart/mixed; boundary="w"\r\n\r\n--w\r\n',
           b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n",
           base64.encodebytes(body.encode()).replace(b"\n", b"\r\n")]
    for i in range(count):
        text = f"添付{i}: 本編 P.{i % 90 + 1} の記述について意見です。".encode()
        out.append(b'--w\r\nContent-Type: text/plain; charset=utf-8\r\n'
                   b'Content-Disposition: attachment; filename="a%d.txt"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
                   % i)
        out.append(base64.encodebytes(text).replace(b"\n", b"\r\n"))
    out.append(b"--w--\r\n")
    return b"".join(out)


def many_header_fields(count: int) -> bytes:
    return HEAD + b"".join(b"X-Filler-%d: x\r\n" % i for i in range(count)) + b"\r\nbody\r\n"


def long_header_line(length: int) -> bytes:
    return HEAD + b"X-Long: " + b"a" * length + b"\r\n\r\nbody\r\n"


def unclosed_tags_html(tags: int) -> bytes:
    """An HTML body of `tags` unclosed start tags (quadratic in CPython 3.11's html.parser: CVE-2025-6069)."""
    html = b"<html><body><p>\xe6\x9c\xac\xe7\xb7\xa8 P.1</p>" + b"<a " * tags
    return (HEAD + b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(html).replace(b"\n", b"\r\n"))


def single_line_text(size: int) -> bytes:
    """A text body of one line, `size` bytes of 8-bit text in all (no line end until the last)."""
    head = HEAD + b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    return head + b"a" * max(0, size - len(head) - 2) + b"\r\n"


def big_xlsx(rows: int, cols: int = 1) -> bytes:
    """One sheet of `rows` x `cols` numbers, written by hand (openpyxl would take minutes for a million rows)."""
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    pkg = "http://schemas.openxmlformats.org/package/2006/relationships"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        zf.writestr("[Content_Types].xml",
                    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                    '<Default Extension="xml" ContentType="application/xml"/>'
                    '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.'
                    'spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType='
                    '"application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>')
        zf.writestr("_rels/.rels", f'<Relationships xmlns="{pkg}"><Relationship Id="rId1" '
                                   f'Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
        zf.writestr("xl/workbook.xml", f'<workbook {ns} xmlns:r="{rel}"><sheets><sheet name="S" sheetId="1" '
                                       'r:id="rId1"/></sheets></workbook>')
        zf.writestr("xl/_rels/workbook.xml.rels", f'<Relationships xmlns="{pkg}"><Relationship Id="rId1" '
                                                  f'Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/>'
                                                  '</Relationships>')
        with zf.open("xl/worksheets/sheet1.xml", "w") as member:
            member.write(f"<worksheet {ns}><sheetData>".encode())
            letters = [chr(65 + c) for c in range(cols)]
            for r in range(1, rows + 1):
                member.write(f'<row r="{r}">'.encode()
                             + "".join(f'<c r="{x}{r}"><v>{r}</v></c>' for x in letters).encode() + b"</row>")
            member.write(b"</sheetData></worksheet>")
    return buf.getvalue()


def with_attachment(name: str, data: bytes, ctype: str, body: str = "本編 P.1 について。") -> bytes:
    return (HEAD + b'Content-Type: multipart/mixed; boundary="z"\r\n\r\n--z\r\n'
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(body.encode()).replace(b"\n", b"\r\n")
            + f'--z\r\nContent-Type: {ctype}\r\nContent-Disposition: attachment; filename="{name}"\r\n'.encode()
            + b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(data).replace(b"\n", b"\r\n")
            + b"--z--\r\n")
