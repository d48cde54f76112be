"""Producers of real test files, as bytes.

Each function returns the bytes of one file made by real software (python-docx, XlsxWriter,
msoffcrypto-tool, LibreOffice headless) or, where no producer can make the case (bombs, corrupt
containers, a minimal PE), built byte by byte from the format's definition. Slow producers are
cached for the test session. Shared with the pipeline tests (a real clamd sees these bytes too).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import shutil
import struct
import subprocess
import tempfile
import zipfile
import zlib
from pathlib import Path

from conftest import CORPUS

COMMENT_JA = "氏名：山田太郎\n意見：本編の第2章について、テストの意見です。\n理由：一太郎とシート1。\n"

# --------------------------------------------------------------------------------------------
# A real VBA project.
#
# `vbaProject.bin` from XlsxWriter 3.3.1's source distribution (examples/vbaProject.bin,
# extracted from an Excel .xlsm: modules ThisWorkbook, Sheet1, Sheet2, Module1 with
# `Sub say_hello(): MsgBox ("Hello from Python!")`). olevba finds its VBA project.
# XlsxWriter: Copyright (c) 2013-2026, John McNamara <jmcnamara@cpan.org>, BSD 2-Clause License.
# Stored zlib-compressed and base64-encoded so the test suite needs no network.
_VBA_PROJECT_SHA256 = "0ced1464b3677e98f5e3a8c5d80135e18dc98dca39299f1a8cfd2a00999fbf9f"
_VBA_PROJECT_Z = (
    "eNrtW31UW+d5f+6VACGQLTB2bYxtGfwVxzj3XoQMtmlB0hWQgEXAid2F2BYgjGKBiCRc3PhDduI0abPOS7w27ZosybI2rdMt"
    "Traebl0znGX7Y+lap/M/dffRfOyc5Oz0NDtnPV13Umu/9973SldCYMDOknR+Lz/e977fH8/zvM/7vFcXf1Txs6fPV79Bee6T"
    "ZKEr6VIqNsUJHJpzEomk40o6nTai0zfcx8r9BijBulUBVqAIYGtuAxxAKWAHyoByYBGwEliskwBVAJXAEmApp4Vl8D8BLAdW"
    "ANVADU9bxf0b7qPheimGJ0kuUmkMfpyO0HzcMlCMUdeiq+R94Rtfa3v1Vz8SLAhPbdHj7iQvtdHCnQ0SyWjfepV2Dd+ctptG"
    "KEIJ2oNZiNMhGtDm49Cc26+GBDTP51zLvWHR/T60H8aTJHlB419EomDn/DrX9hnfXrZkZTqT4ZY8/i/hdebzv4PLgMWcj838"
    "X8VlQCH+X8llAOP/1cAaXn4t/FqgDlgHrAc2ABuBTcBNwGbgZoCRTD2wFbgFkHgdCvwGwM3fPdxvgt8MbAd2ADuBFm1vI/oU"
    "0Aow2vMCPsAPqECAl++A3wncCtwGdAHdwC4gCPQAtwO92joyWiK6Q6Npvfxe+J8Gfge4C+gH7gb2AfuBA0AIGAAGgSEgDAwD"
    "B4ERIALcAzCKjAKjwBgQA8aBe4E4kACSwARwGPgMMAkwbv4scB9wFDgGHAdOACm2/ssEEt5D4AeggkukUwMjpH+Cv9FEJJef"
    "2OBiKXV4eQjv30FYEMhEdvNjgOkkaeHkV2JSIwTBIOxJTpCzOr35btXcGeO/3tl/4+/lH7qmskmb674uvZ8C9TkzobNG38Wd"
    "esjovQDak7CWkvYoQBPkRjO4QuKPOeSbFmd+3OQBNRTz6RUExg1iSt+bncT7J0zX7Ihz8Xoe18H91hw9cbo2OJN2OFu8kNfu"
    "THMpaLLg9jUHe11Y4WtwV/5ByEyImfL40rzwArUlk/HIwESSwq47vft3hUYRaHHV7h7BLrInFj80EIs5D9U67PZHvKGEID4i"
    "3SdJkiL1NMnN9eSULDZfCVWJlcI6SXJ7jp10HG2PxgZCUeGis288NCg8GghFrYlw+ZAvHg4lbaGB6NI1PfHw0JnwYDRExZ1D"
    "dN62Oz7h8KqT4zFkrKrZHR4dj1IoGfaH45HDFrHyUe9EIhkbjRR/1uq3KFcZ8Dz4//T2G/x/g///X/P/N2fk/76RcGs4KTPG"
    "f8drDSXEpMb4rYqkMb5LWgXOzzC+1XOMM743KrzKGd8ZinLGd4WSnPFbw0Oc8WuH6BxnfOd4jDM+jUd1xi+PHBbX6Yy/fDQy"
    "F8bnrhuaxBC0hig0D3lBjCtq+nzxPPRPFwNX1vfj6YMG1QNfWVj789a/2Th/RtPbb1hg++VcT55r+41cv5vt/DHXtahZwPi3"
    "mfV/yH8rk/+vcvn/gqAPpAgZ/iJH/l/8KUvhUQXlv5U+WPkvXj/5b/tIyH8ij93oZ7UtK/XLqbD8z0pEQWCbcBN/E+9fLTKf"
    "jUqi3M24kNwuq3SJPO5Afh7j/f0rHWSmK4u2QA9o68RipjihfFdgvco5VGf6le+armIhtOWc7K10NbmvE4Qu94V1OCj2g5WH"
    "+bMZm8IAmE3BRrcNDDWMsEyCk2eT4Nchwn3tO4aFak/aIAI5fZ60WVfz468V8SLSbTnb7JesTVrGGOLGTdvod3CU7ghHozHX"
    "cDw26uo5khyJja1dRW2ttaKAIyLLJ2V3o9CMu1F3DDI9GmbbUR9NDLgSoSP7R4jVvOkmh12EAO5OHPTGJp2uTbUdwm40R0Z7"
    "trG1teRXx4ZcAo057FcbfvyOFD9JGsAkHD+qHzA1S0Epz6n7Fq7EiRrNMIq6UMSlMjc1P839cX7CR9abN75/ZWNNeuPO9C9Z"
    "xPYoFn5Xf9ran7YLVEUeG/Wnd6ZrQLK6EQKUk0LZdbytJUTcepGVmsTtHTiVo7KdQA3w/hWRxVZq5+0Tc1l+ffxkGr8hzkr5"
    "OM28ZdNaXUcneZrOf7+ZWX6PXa0bTH6TWX4b+vtr8NfkyO+Xe27o7791+jtlBEvTNejv+ixfP72d5qi3m0t8kHr7+Tmd212H"
    "NP39jDckJsQz+sH9KSlzcF+U1d89oqG/R9cKPzYO7jZDfw85Df097DL096EKetE4uNsM/X2cuP4eKT6cObiXz0d/nwf/KycK"
    "8H/W/qwsaOIXLUD/bAdetxj6t34DsB8aeC8F6VZSQfe752N/F0ST0JlLmT1AR5keHoL2Hb+m+4f5j/80s+mK088f0v/R+ef3"
    "mL29KIfZb8j/D03+K3lS/7dB/gsfMfn/3FXsNkq+3WZKkZoUqZ5cVl3s10wX+6/OVeyfm13sr1uI2M+4H4ROs+lOl2LUpVBd"
    "37YKJjucFRRaI7DzTnsO1bkhZQPXQHV18LfirQ66Sx1KbEcLPZCjMTqI/yEaJRfqj2hWpQTSfEgZxRODQpub0o3woFYyAQxr"
    "N9FsTwohLgzp3M/3B8P38JCK0FbyUxeeOsQwG8oESkVR3gs/odXL2mJ2FRdKjuOJarEhtBLR+pLI3UsKzBTTzxquaaZk9NMD"
    "X8rM1HjeTA2b5mO0wHzEtOMsiw/jTdFq34a8QVO8jPh+zMpetKFiTrZqYRVtFpphlSa1Umy2WEm2li7UN0D3IHZQy9OFcgNa"
    "H/O/CfhrKkRRDdckx+p4L8zztIc6IS/96Nce0EQ/+n8EAAdjlhq08bK3IYyKzR4rn0RoAOWD6L2qrfoE4hjtZdfc7DZlVlxB"
    "OwGstl/rkQ99bQQdBVBDPWZIArwIeZGuIkUfSRsefQRuHq9kRuLOGckHxRtB5A9gltia6xTQjRxBE2cUqiOYQ0/zX/8iSBV2"
    "fmf/rWSFJlMsCmSDb4fvFHP3bm6dId1ak/1WwzKvHVwoIPsuP1FEy2e0oFZhTHfnmH8U/E+nl4ozl0mn2SV35nBer5m6ynM+"
    "0mDV7itQ7QoxN186ze7LmFuerWpRnr29qqCJKp1eLebnTKeZ+ZU5iVX3Pa266lnMx6zqRjwehGUsKWsojDLrxdlKpdPMSsBc"
    "D2tm/bQJULSKPQUq3ijm5kunFW66GMlWxU2Xoj4r+Ys8Il7fDwilWeqj69hWj/ix/fCRWaJOAffrtl3tu5UH4X+O9GPiw8Dn"
    "gS8AjwC/C3yR5zsD//eBR4HHgLPAHzDzJvBl4HHgK8BXgT8EvgY8ATwJ/BHwFLP2Ac8Af8zr/BPufwP+czz8LfjngOeBbwN/"
    "CvwZu6oAzgMv3vim8OPnnv/nn1df/GFH1yNdf/efUzveqzKEfPW/PF37zDNXOv/8zKqatx6r7zXi+x58s/z5Y3/f8eThV879"
    "ov3eHUZ8xiZuuav5RP9x/4OHp95b/7e/fNdIP+He7P6P2kttz/5k30uO15YHzeWYDNJNtkuEKkrTdzdgc7Oqk4PhaOpmJ1ms"
    "d3rbfvWmE3F7ImOy58JxHmxQSk6w5O7Q4EsvOsnK8nm+Xeckm7UnHrsnPJiU7Z9wUrE1kRyKRcOPHXCSneXhiS//DUsLDg9H"
    "BsNLJ5xUbt09EjGMUIeOvuWk0hQbkED71cOh6ATOCst/worgsBJOyu9Us4aM7IeWI7v2lmCpF644qcTaHRti5v+BCqQ9YENV"
    "6bR2BcBuAKQkquL2/y/3OsmR07rceHemJeVdtCQygT1Z8Ay3SGS2B32/rxQt2t7KLEJ66groAsU5pdYgf1lOzHqUKqONopWZ"
    "BkRNR5gmShdrJn1B+4pumvVrxhhhljzX0wnDL6YE7SZBIGmzKJ4ppfGq4g4LnRJp6G2rlexUQ8bSPzSYLGJfKbaKVfcUi/YW"
    "0V4ixoUqW1FxZalYqSlKZ6lcvHWnaF9GQjylk88nxRUZRTfFtAEHdtn14j6ybO5vx2E1JSmSuwGHVdsqq9UHHWyRUInDKnmO"
    "1SlbpTpoob7t/Xs6d0GR3tPXnziSSLrCow1KvyWsQGOODtQFu1SoyhM4g4aSkZrYGB0g4X4V9OmPDD6gQltMUeQSDZ5Sn0xV"
    "nE0JJ1VS/IEmv+SGmtzoDbTVy1JK9tZ7/WpjSr3U1pbyuVNFykNq6nE6GA+NugIR9DrR74uNjsbEMWtxd2QwHoM6Opx09Y2E"
    "oMsO9QcDgU4osbLS390X3Cr5u7rqPue8v9slV6TudQUHTl5wdUUODMRD8SN0GwmLK05dKqIlpyyXn1ghnHqO0y9pBNxOy4tS"
    "S3anzmkKTlvqJU3BmRJid0wJ1T8sUy6X1UxVgqQ6vILsnYRatoVWe0WhaMsraze4Ntd6bTd7hRXeo30jTzFea39lZV9r3alw"
    "616m01V3lHxd2VXy1srT219bWTK1qlXnM6pZ9JZgSe2Atnbq8ZM1NtsWhRbbgqu+19N88ac/XptaRqQ2O1otnfu+P7W6+qT1"
    "7L4La79Yrkz5niW645BMwQ3rezb818s9l/Yr/7j/Dccb9z7T8FXl57coacebLcqJdx2iM7V6Jvp77LbNpwXN/GZYXkTK2mBE"
    "MuKMUNEMD7vJYkXMN3mg6uNCHtjtHjS548b92NLMTZeQMe9VcJbbKL4shc68fttfqc/XvCPLDwuahYJZKt62GrypfWpAon26"
    "zekvDUW8QJrxcxXB1pa5Z3u6KGu7GjfZsQQ6WZS1Lv6ap1js1mm1/rp45rS1JcTvDF+fQaC8O8PXCaUzfJZ+U1HheGQX2V2l"
    "WSqjapF1Tt8A2BvrDpfyFn2OKLvBoArLL6x6f6b0WgOoUmQfTUMW9PQG23vbjsv9vmB3d3AXAt2dvt5gHwKog8GDf6pnK9gQ"
    "gxUteuVowy4L2Ym18qX/NI+7wH0pfziWJbbcvixGpc16X8bjMU1GDEeiEBGjmmRggiGm7Y4uRZK29es7JWSDutendm1V96ps"
    "Btj0aVs169dNonnB9XW8nce9zv3Waf2S8uaIbUJr9H4xeWmIS01a6rJY2QqBaayGHoWVOMG60GbJdsEghQiPO8/9nmld6Lr4"
    "3/X/c9dK5/f/nb5F/n/tZT+r+hRfJj41AW1qNOk5xl+6M/PEBKghPw3xiWUzuqhPHeteyGrunv7yMI+r4KR4IKd7jK7Y+mY0"
    "B0Q4yqncZMZHchkTTR2aLSmKDYpZs+KaRcOF0YYRjmoV2TQa0mnKQVRSUZztTp9Ypp01SP+tQZnrqjWu1bjEkcclcg6bKCvm"
    "coVf+P7ebvpuYSabt/E9g/GenOMXA7nO3P9ZfoyiM37er0U4/0/7hi9nTmb9wqxvxHz/tNDv/8r4xc9cr4+e5b+Z0DnCfOv3"
    "Ge33DfNxVQu4//o6P6dOb39h4xf472Lm2v43mawRr58OupDfHxmOMcq1XAJ3+ltq72vyN0nbZEWplzyN2+rdiq+p3uvzBOrd"
    "3saAX2qSGmRf87Fah90fG5wYDY8lW8wUesuGDok7Uw6d4HPSdHJv4VQ/Q23yLNUpOWm7QqPhltrspon+dYSj477YWDI8mWTj"
    "khB1ZzieiMTGIH3HoRwPRMMNSkttQ3ODomBrYhl83e0ttX6vv9njUX2qOyCZwcbc422pbWxs3KY2eVS5SW2Wm3Ugrd3XUusL"
    "+PzblIDU7JElmTtVRaLDfldHDLq6OpkMjw2F467OseHY3Q57Zgxyy30NTQ2K3+OW6n2BZqleln2B+ibV3VAvSW2Sr1mWJamx"
    "7dgOyN0d5pGjZu28OB4aDKNC8/S1SFtcmT+fw64vQ34sX4IWNLDFJbsbt7iam91bXNsUeYsrtz65YIVKfizdcB+S+1+Kty57"
)


@functools.cache
def vba_project_bin() -> bytes:
    data = zlib.decompress(base64.b64decode("".join(_VBA_PROJECT_Z)))
    assert hashlib.sha256(data).hexdigest() == _VBA_PROJECT_SHA256
    return data


def corpus(name: str) -> bytes:
    """A file from the real corpus, e.g. corpus("msoffice/test.docx")."""
    return (CORPUS / name).read_bytes()


# --------------------------------------------------------------------------------------------
# Office documents


@functools.cache
def make_docx(text: str = COMMENT_JA) -> bytes:
    """A plain .docx written by python-docx."""
    import docx

    doc = docx.Document()
    for line in text.splitlines():
        doc.add_paragraph(line)
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


@functools.cache
def make_xlsx() -> bytes:
    """A plain .xlsx written by XlsxWriter."""
    import xlsxwriter

    out = io.BytesIO()
    wb = xlsxwriter.Workbook(out, {"in_memory": True})
    ws = wb.add_worksheet("シート1")
    ws.write(0, 0, "意見")
    ws.write(0, 1, "テスト")
    wb.close()
    return out.getvalue()


@functools.cache
def make_xlsm() -> bytes:
    """A real .xlsm: XlsxWriter with the real vbaProject.bin (macroEnabled content type)."""
    import xlsxwriter

    out = io.BytesIO()
    wb = xlsxwriter.Workbook(out, {"in_memory": True})
    ws = wb.add_worksheet()
    ws.write(0, 0, "意見")
    wb.set_vba_name("ThisWorkbook")
    ws.set_vba_name("Sheet1")
    wb.add_vba_project(io.BytesIO(vba_project_bin()), is_stream=True)
    wb.close()
    return out.getvalue()


def _rewrite_zip(src: bytes, replace: dict[str, bytes], add: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            body = replace.get(info.filename, zin.read(info))
            zout.writestr(info.filename, body)
        for name, body in add.items():
            zout.writestr(name, body)
    return out.getvalue()


def _inject_vba(docx_bytes: bytes, *, macro_enabled_type: bool) -> bytes:
    """Add word/vbaProject.bin with its relationship and content type, as Word stores a .docm."""
    with zipfile.ZipFile(io.BytesIO(docx_bytes)) as z:
        ct = z.read("[Content_Types].xml").decode("utf-8")
        rels = z.read("word/_rels/document.xml.rels").decode("utf-8")
    ct = ct.replace(
        "</Types>",
        '<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/></Types>',
    )
    if macro_enabled_type:
        ct = ct.replace(
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
            "application/vnd.ms-word.document.macroEnabled.main+xml",
        )
    rels = rels.replace(
        "</Relationships>",
        '<Relationship Id="rIdVba1" '
        'Type="http://schemas.microsoft.com/office/2006/relationships/vbaProject" '
        'Target="vbaProject.bin"/></Relationships>',
    )
    return _rewrite_zip(
        docx_bytes,
        replace={"[Content_Types].xml": ct.encode(), "word/_rels/document.xml.rels": rels.encode()},
        add={"word/vbaProject.bin": vba_project_bin()},
    )


@functools.cache
def make_docm() -> bytes:
    """A .docm: a python-docx document with the real VBA project and the macroEnabled main type."""
    return _inject_vba(make_docx(), macro_enabled_type=True)


@functools.cache
def make_docx_with_hidden_vba() -> bytes:
    """A VBA project inside a package that still claims to be a plain .docx."""
    return _inject_vba(make_docx(), macro_enabled_type=False)


@functools.cache
def make_xlsx_with_macrosheet() -> bytes:
    """An .xlsx with an Excel 4.0 (XLM) macro sheet part, as Excel stores one (xl/macrosheets/)."""
    src = make_xlsx()
    with zipfile.ZipFile(io.BytesIO(src)) as z:
        ct = z.read("[Content_Types].xml").decode("utf-8")
    ct = ct.replace(
        "</Types>",
        '<Override PartName="/xl/macrosheets/sheet1.xml" '
        'ContentType="application/vnd.ms-excel.macrosheet+xml"/></Types>',
    )
    sheet = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<xm:macrosheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:xm="http://schemas.microsoft.com/office/excel/2006/main">'
        '<sheetData><row r="1"><c r="A1"><f>EXEC("calc.exe")</f></c></row>'
        '<row r="2"><c r="A2"><f>HALT()</f></c></row></sheetData></xm:macrosheet>'
    )
    return _rewrite_zip(
        src, replace={"[Content_Types].xml": ct.encode()}, add={"xl/macrosheets/sheet1.xml": sheet.encode()}
    )


@functools.cache
def make_encrypted_docx(password: str = "himitsu") -> bytes:
    """A password-protected .docx (ECMA-376 agile encryption, by msoffcrypto-tool)."""
    from msoffcrypto.format.ooxml import OOXMLFile

    out = io.BytesIO()
    OOXMLFile(io.BytesIO(make_docx())).encrypt(password, out)
    return out.getvalue()


@functools.cache
def make_encrypted_xlsx(password: str = "himitsu") -> bytes:
    from msoffcrypto.format.ooxml import OOXMLFile

    out = io.BytesIO()
    OOXMLFile(io.BytesIO(make_xlsx())).encrypt(password, out)
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# LibreOffice headless


def soffice_available() -> bool:
    return shutil.which("soffice") is not None


def _soffice_convert(src: bytes, src_name: str, target: str) -> bytes:
    """Convert with `soffice --headless --convert-to TARGET` in a private profile."""
    with tempfile.TemporaryDirectory(prefix="classify-lo-") as tmp:
        tmpdir = Path(tmp)
        (tmpdir / "in").mkdir()
        (tmpdir / "out").mkdir()
        src_path = tmpdir / "in" / src_name
        src_path.write_bytes(src)
        subprocess.run(
            [
                "soffice",
                f"-env:UserInstallation=file://{tmpdir / 'profile'}",
                "--headless",
                "--norestore",
                "--convert-to",
                target,
                "--outdir",
                str(tmpdir / "out"),
                str(src_path),
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )
        produced = list((tmpdir / "out").iterdir())
        if len(produced) != 1:
            raise RuntimeError(f"soffice produced {produced!r} for {target}")
        return produced[0].read_bytes()


_LO_ENCRYPT_MODULE = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE script:module PUBLIC "-//OpenOffice.org//DTD OfficeDocument 1.0//EN" "module.dtd">
<script:module xmlns:script="http://openoffice.org/2000/script" script:name="Module1" script:language="StarBasic">
Sub Enc(src As String, dst As String, filt As String, pw As String)
  Dim args(0) As New com.sun.star.beans.PropertyValue
  args(0).Name = &quot;Hidden&quot;
  args(0).Value = True
  doc = StarDesktop.loadComponentFromURL(ConvertToURL(src), &quot;_blank&quot;, 0, args())
  Dim out(1) As New com.sun.star.beans.PropertyValue
  out(0).Name = &quot;FilterName&quot;
  out(0).Value = filt
  out(1).Name = &quot;Password&quot;
  out(1).Value = pw
  doc.storeToURL(ConvertToURL(dst), out())
  doc.close(True)
End Sub
</script:module>
"""


def _soffice_save_with_password(src: bytes, src_name: str, dst_name: str, filter_name: str, password: str) -> bytes:
    """Save a copy with a password, as a user would in LibreOffice (File > Save As > password).

    `--convert-to` cannot set a password, so a Basic macro in the private profile calls
    storeToURL with the "Password" media descriptor property.
    """
    with tempfile.TemporaryDirectory(prefix="classify-lo-") as tmp:
        tmpdir = Path(tmp)
        profile = f"-env:UserInstallation=file://{tmpdir / 'profile'}"
        src_path, dst_path = tmpdir / src_name, tmpdir / dst_name
        src_path.write_bytes(src)
        base = ["soffice", profile, "--headless", "--norestore"]
        subprocess.run([*base, "--terminate_after_init"], check=True, capture_output=True, timeout=180)
        module = tmpdir / "profile" / "user" / "basic" / "Standard" / "Module1.xba"
        module.write_text(_LO_ENCRYPT_MODULE, encoding="utf-8")
        call = f'macro:///Standard.Module1.Enc("{src_path}","{dst_path}","{filter_name}","{password}")'
        subprocess.run([*base, call], check=True, capture_output=True, timeout=180)
        if not dst_path.exists():
            raise RuntimeError(f"soffice did not write {dst_name}")
        return dst_path.read_bytes()


@functools.cache
def make_doc() -> bytes:
    """A Word 97-2003 .doc written by LibreOffice Writer."""
    return _soffice_convert(make_docx(), "comment.docx", "doc:MS Word 97")


@functools.cache
def make_xls() -> bytes:
    """An Excel 97-2003 .xls written by LibreOffice Calc."""
    return _soffice_convert(make_xlsx(), "comment.xlsx", "xls:MS Excel 97")


@functools.cache
def make_encrypted_doc(password: str = "himitsu") -> bytes:
    """A password-protected Word 97-2003 .doc (RC4 CryptoAPI, FIB fEncrypted) by LibreOffice."""
    return _soffice_save_with_password(make_docx(), "comment.docx", "comment.doc", "MS Word 97", password)


@functools.cache
def make_encrypted_xls(password: str = "himitsu") -> bytes:
    """A password-protected Excel 97-2003 .xls (FILEPASS record) by LibreOffice."""
    return _soffice_save_with_password(make_xlsx(), "comment.xlsx", "comment.xls", "MS Excel 97", password)


@functools.cache
def make_pdf() -> bytes:
    """A PDF exported by LibreOffice Writer from a .docx."""
    return _soffice_convert(make_docx(), "comment.docx", "pdf:writer_pdf_Export")


@functools.cache
def make_rtf() -> bytes:
    """An RTF written by LibreOffice Writer."""
    return _soffice_convert(make_docx(), "comment.docx", "rtf:Rich Text Format")


@functools.cache
def make_dotx() -> bytes:
    """A Word template (.dotx) written by LibreOffice Writer."""
    return _soffice_convert(make_docx(), "comment.docx", "dotx:MS Word 2007 XML Template")


@functools.cache
def make_xltx() -> bytes:
    """An Excel template (.xltx) written by LibreOffice Calc."""
    return _soffice_convert(make_xlsx(), "comment.xlsx", "xltx:Calc MS Excel 2007 XML Template")


@functools.cache
def make_odt() -> bytes:
    """An OpenDocument text written by LibreOffice Writer."""
    return _soffice_convert(make_docx(), "comment.docx", "odt")


# --------------------------------------------------------------------------------------------
# Text


def make_text(encoding: str, text: str = COMMENT_JA) -> bytes:
    """The comment in one encoding. 'utf-16' writes a BOM (Python's codec does)."""
    return text.encode(encoding)


# A short EUC-JP text that libmagic 5.44 describes as "OpenPGP Public Key".
EUC_JP_PGP_LOOKALIKE = "董見です。\n"


def make_csv() -> bytes:
    return "項目,意見\n本編,テスト\n".encode()


def make_html() -> bytes:
    return '<!DOCTYPE html>\n<html lang="ja"><body><p>意見</p></body></html>\n'.encode()


# --------------------------------------------------------------------------------------------
# Executables


def make_elf() -> bytes:
    """A real ELF binary (this machine's /bin/true)."""
    return Path("/bin/true").read_bytes()


def make_elf_as_txt() -> tuple[bytes, str]:
    """An ELF binary and the innocent name it arrives under."""
    return make_elf(), "意見.txt"


def make_pe() -> bytes:
    """A minimal PE32 image: DOS header with e_lfanew -> 'PE\\0\\0', COFF header, optional header."""
    dos = bytearray(0x80)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x80)
    coff = struct.pack("<HHIIIHH", 0x014C, 0, 0, 0, 0, 0xE0, 0x0102)  # i386, 0 sections, executable
    optional = bytearray(0xE0)
    struct.pack_into("<H", optional, 0, 0x010B)  # PE32
    struct.pack_into("<H", optional, 68, 3)  # subsystem: console
    return bytes(dos) + b"PE\x00\x00" + coff + bytes(optional)


# --------------------------------------------------------------------------------------------
# Bombs and broken containers


@functools.cache
def make_zip_many_members(n: int = 20_000) -> bytes:
    """A zip with n tiny members."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for i in range(n):
            z.writestr(f"m{i}.txt", b"x")
    return out.getvalue()


@functools.cache
def make_zip_of_zeros(size: int = 201 * 1024 * 1024) -> bytes:
    """A zip holding `size` bytes of zeros, deflated while streaming (memory stays ~1 MiB)."""
    out = io.BytesIO()
    chunk = bytes(1024 * 1024)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("zeros.bin", "w", force_zip64=True) as member:
            left = size
            while left > 0:
                member.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
    return out.getvalue()


@functools.cache
def make_zip_forged_size(declared: int = 0xFFFF_FF00) -> bytes:
    """A small zip whose local and central headers both declare `declared` uncompressed bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.txt", b"hello " * 100)
    buf = bytearray(out.getvalue())
    local = buf.find(b"PK\x03\x04")
    struct.pack_into("<I", buf, local + 22, declared)
    central = buf.find(b"PK\x01\x02")
    struct.pack_into("<I", buf, central + 24, declared)
    return bytes(buf)


def make_zip_with_encrypted_flag(src: bytes | None = None) -> bytes:
    """A zip whose members are marked encrypted (general purpose flag bit 0), as a password zip."""
    buf = bytearray(src if src is not None else make_docx())
    for sig, flag_off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        pos = buf.find(sig)
        while pos >= 0:
            (flags,) = struct.unpack_from("<H", buf, pos + flag_off)
            struct.pack_into("<H", buf, pos + flag_off, flags | 0x1)
            pos = buf.find(sig, pos + 4)
    return bytes(buf)


def make_truncated_docx() -> bytes:
    data = corpus("msoffice/test.docx")
    return data[: len(data) // 2]


def make_corrupt_ole2() -> bytes:
    """test.doc with its header's FAT and directory pointers overwritten with garbage."""
    buf = bytearray(corpus("msoffice/test.doc"))
    buf[0x2C:0x200] = b"\xa5" * (0x200 - 0x2C)
    return bytes(buf)


def make_truncated_ole2() -> bytes:
    return corpus("msoffice/test.doc")[:2048]


def make_ole2_forged_stream_size(declared: int = 0xF000_0000) -> bytes:
    """test.doc whose WordDocument directory entry declares `declared` bytes (streams that alias)."""
    buf = bytearray(corpus("msoffice/test.doc"))
    entry = buf.find("WordDocument".encode("utf-16-le") + b"\x00\x00")
    assert entry >= 0 and entry % 128 == 0
    struct.pack_into("<I", buf, entry + 120, declared)
    return bytes(buf)
