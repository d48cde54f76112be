"""Text extraction from real and generated attachments (daemon.extract)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from daemon.extract import Extraction, ExtractLimits, extract, extract_in_process

CORPUS = Path(os.environ.get("CORPUS_DIR", Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"))
REAL = CORPUS / "real"
if not REAL.is_dir():
    REAL = Path("/work/shared/corpus/real")

FIVE = ["test", "テスト", "一太郎", "sheet1", "シート1"]
ROWS = [
    ["該当箇所", "意見", "理由"],
    ["第1章①", "㈱髙﨑製作所の件～修正を求めます", "根拠が不明確\n二段落目"],
    ["第2章㈱", "", "髙﨑～"],
]
ICHITARO_FMT = {
    ".jtd": "jtd",
    ".jtt": "jtd",
    ".jfw": "jtd",
    ".jvw": "jtd",
    ".jtdc": "jtdc",
    ".jttc": "jtdc",
    ".jaw": "ichitaro-dos",
    ".jtw": "ichitaro-dos",
    ".jbw": "ichitaro-dos",
    ".juw": "ichitaro-dos",
}


def real(folder: str, name: str) -> bytes:
    path = REAL / folder / name
    if not path.exists():
        pytest.skip(f"corpus file missing: {path}")
    return path.read_bytes()


def lines(result: Extraction) -> list[str]:
    return [line for line in result.text.split("\n") if line.strip()]


# --- Ichitaro ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "taro2016_basic.jtd",
        "taro2016_temp.jtt",
        "taro2016_basic_zip.jtdc",
        "taro2016_temp_zip.jttc",
        "taro7_taro2016_basic.jfw",
        "taro7_taro2016_temp.jvw",
        "ver5_taro2016_basic.jaw",
        "ver5_taro2016_temp.jtw",
        "ver6_taro2016_basic.jbw",
        "ver6_taro2016_temp.juw",
    ],
)
def test_ichitaro_five_lines(name: str) -> None:
    fmt = ICHITARO_FMT[Path(name).suffix]
    result = extract(real("ichitaro", name), "ichitaro", fmt)
    assert result.error is None
    assert lines(result) == FIVE
    assert result.replaced == 0
    expected_decoder = {
        "jtd": "ichitaro-documenttext",
        "jtdc": "ichitaro-lha",
        "ichitaro-dos": "ichitaro-dos",
    }[fmt]
    assert result.decoder == expected_decoder


def test_ichitaro4_is_recorded_unsupported() -> None:
    result = extract(real("ichitaro", "ver4_taro2016_basic.jsw"), "ichitaro", "ichitaro-dos")
    assert result.error == "unsupported:ichitaro4"
    assert result.text == ""


def test_jtdc_given_as_jtd_fails_cleanly() -> None:
    result = extract(real("ichitaro", "taro2016_basic_zip.jtdc"), "ichitaro", "jtd")
    assert result.error == "corrupt"


# --- Microsoft Office corpus -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt", "expected"),
    [
        ("test.doc", "doc", ["テスト"]),
        ("test_as.doc", "doc", ["テスト", "test"]),  # text in an autoshape (text box)
        ("test.docx", "docx", ["テスト"]),
        ("test_as.docx", "docx", ["テスト", "test"]),
        ("test.xls", "xls", ["テスト"]),
        ("test_as.xls", "xls", ["テスト", "test"]),
        ("test.xlsx", "xlsx", ["テスト"]),
        ("test_as.xlsx", "xlsx", ["テスト", "test"]),
    ],
)
def test_msoffice_corpus(name: str, fmt: str, expected: list[str]) -> None:
    kind = "excel" if fmt.startswith("xls") else "word"
    result = extract(real("msoffice", name), kind, fmt)
    assert result.error is None
    assert lines(result) == expected
    assert result.replaced == 0


def test_corpus_sheet_is_a_table() -> None:
    for name, fmt in (("test.xls", "xls"), ("test.xlsx", "xlsx")):
        result = extract(real("msoffice", name), "excel", fmt)
        assert result.tables == [[["テスト"]]], name


def test_powerpoint_is_not_a_word_file() -> None:
    assert extract(real("msoffice", "test.ppt"), "word", "doc").error == "corrupt"
    assert extract(real("msoffice", "test.pptx"), "word", "docx").error == "corrupt"


# --- generated Word / Excel tables (python-docx, openpyxl, LibreOffice) ------------------------


def _make_docx(path: Path) -> None:
    import docx

    document = docx.Document()
    document.sections[0].header.paragraphs[0].text = "ヘッダー文字列"
    document.sections[0].footer.paragraphs[0].text = "フッター文字列"
    document.add_paragraph("意見書（前文）")
    table = document.add_table(rows=3, cols=3)
    for r, row in enumerate(ROWS):
        for c, value in enumerate(row):
            cell = table.cell(r, c)
            first, *more = value.split("\n")
            cell.paragraphs[0].text = first
            for extra in more:
                cell.add_paragraph(extra)
    document.add_paragraph("以上")
    _add_field(document.add_paragraph("参照："), 'HYPERLINK "https://example.jp/iken"', "意見募集ページ")
    document.save(str(path))


def _add_field(paragraph: object, instr: str, result: str) -> None:
    """A complex field (begin / instrText / separate / result / end) appended to a paragraph."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    def run(child: object) -> None:
        r = OxmlElement("w:r")
        r.append(child)
        paragraph._p.append(r)  # type: ignore[attr-defined]

    def fld_char(kind: str) -> object:
        el = OxmlElement("w:fldChar")
        el.set(qn("w:fldCharType"), kind)
        return el

    instr_el = OxmlElement("w:instrText")
    instr_el.text = f" {instr} "
    text_el = OxmlElement("w:t")
    text_el.text = result
    for child in (fld_char("begin"), instr_el, fld_char("separate"), text_el, fld_char("end")):
        run(child)


def _make_xlsx(path: Path) -> None:
    import datetime

    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "意見"
    for row in ROWS:
        ws.append([v or None for v in row])
    ws.append([1, 2.5, datetime.datetime(2024, 4, 1)])
    wb.create_sheet("空")
    other = wb.create_sheet("別紙")
    other["B2"] = "別紙の本文"
    wb.save(str(path))


def _soffice(src: Path, target: str, outdir: Path, profile: Path) -> Path:
    exe = shutil.which("soffice") or shutil.which("libreoffice")
    if exe is None:
        pytest.skip("LibreOffice (soffice) is not installed")
    subprocess.run(
        [
            exe,
            f"-env:UserInstallation=file://{profile}",
            "--headless",
            "--convert-to",
            target,
            "--outdir",
            str(outdir),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    out = outdir / (src.stem + "." + target)
    assert out.exists(), f"LibreOffice did not produce {out}"
    return out


@pytest.fixture(scope="session")
def office_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """.docx/.xlsx made by python-docx/openpyxl, and their .doc/.xls made by LibreOffice (once)."""
    base = tmp_path_factory.mktemp("office")
    files = {"docx": base / "iken.docx", "xlsx": base / "iken.xlsx"}
    _make_docx(files["docx"])
    _make_xlsx(files["xlsx"])
    profile = base / "lo-profile"
    converted = base / "converted"
    converted.mkdir()
    files["doc"] = _soffice(files["docx"], "doc", converted, profile)
    files["xls"] = _soffice(files["xlsx"], "xls", converted, profile)
    return files


@pytest.mark.parametrize("fmt", ["docx", "doc"])
def test_word_table_rows(office_files: dict[str, Path], fmt: str) -> None:
    result = extract(office_files[fmt].read_bytes(), "word", fmt)
    assert result.error is None
    assert result.tables == [ROWS]
    got = lines(result)
    body = got.index("意見書（前文）")
    assert got[body + 1] == "該当箇所\t意見\t理由"
    assert got[body + 2] == "第1章①\t㈱髙﨑製作所の件～修正を求めます\t根拠が不明確 二段落目"
    assert got[body + 3] == "第2章㈱\t\t髙﨑～"
    assert got[body + 4] == "以上"
    assert got[body + 5] == "参照：意見募集ページ"  # field result kept, field code dropped
    assert "HYPERLINK" not in result.text
    assert "ヘッダー文字列" in got
    assert "フッター文字列" in got
    assert result.replaced == 0


def test_docx_order_header_body_footer(office_files: dict[str, Path]) -> None:
    got = lines(extract(office_files["docx"].read_bytes(), "word", "docx"))
    assert got[0] == "ヘッダー文字列"
    assert got[-1] == "フッター文字列"


@pytest.mark.parametrize("fmt", ["xlsx", "xls"])
def test_excel_table_rows(office_files: dict[str, Path], fmt: str) -> None:
    result = extract(office_files[fmt].read_bytes(), "excel", fmt)
    assert result.error is None
    assert result.decoder == fmt
    first, second = result.tables
    assert first[:3] == ROWS
    assert first[3] == ["1", "2.5", "2024-04-01"]
    assert second == [["別紙の本文"]]  # the empty sheet gives no table
    assert result.replaced == 0


def test_excel_text_reading_order(office_files: dict[str, Path]) -> None:
    for fmt in ("xlsx", "xls"):
        text = extract(office_files[fmt].read_bytes(), "excel", fmt).text
        assert text == (
            "該当箇所\t意見\t理由\n"
            "第1章①\t㈱髙﨑製作所の件～修正を求めます\t根拠が不明確\n二段落目\n"
            "第2章㈱\t髙﨑～\n"
            "1\t2.5\t2024-04-01\n"
            "別紙の本文"
        ), fmt


# --- plain text --------------------------------------------------------------------------------

TEXT = "パブリックコメント意見：①㈱髙﨑～\n第二行"


@pytest.mark.parametrize(
    "raw",
    [
        TEXT.encode("utf-8"),
        TEXT.encode("cp932"),
        TEXT.replace("①㈱髙﨑～", "高崎").encode("euc_jp"),
        b"\xff\xfe" + TEXT.encode("utf-16-le"),
        b"\xfe\xff" + TEXT.encode("utf-16-be"),
        b"\xef\xbb\xbf" + TEXT.encode("utf-8"),
    ],
    ids=["utf-8", "cp932", "euc-jp", "utf-16le-bom", "utf-16be-bom", "utf-8-bom"],
)
def test_text_charsets(raw: bytes) -> None:
    result = extract(raw, "text", "txt")
    assert result.error is None
    expected = TEXT if "高崎".encode("euc_jp") not in raw else TEXT.replace("①㈱髙﨑～", "高崎")
    assert result.text.lstrip("\ufeff") == expected
    assert result.replaced == 0


def test_text_crlf_becomes_lf() -> None:
    assert extract("一行目\r\n二行目".encode("cp932"), "text", "txt").text == "一行目\n二行目"


# --- failures ----------------------------------------------------------------------------------


def _zip_bomb(size: int) -> bytes:
    """A .docx-looking zip with one member of `size` zero bytes, written in chunks."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        with zf.open("word/document.xml", "w", force_zip64=True) as member:
            chunk = b"\0" * (1 << 20)
            for _ in range(size >> 20):
                member.write(chunk)
    return buf.getvalue()


@pytest.fixture(scope="session")
def zip_bomb() -> bytes:
    return _zip_bomb(300 << 20)


def test_zip_bomb_docx_is_too_large_quickly(zip_bomb: bytes) -> None:
    assert len(zip_bomb) < 2 << 20
    start = time.monotonic()
    result = extract(zip_bomb, "word", "docx")
    assert result.error == "too_large"
    assert time.monotonic() - start < 5
    assert extract(zip_bomb, "excel", "xlsx").error == "too_large"


def test_truncated_docx(office_files: dict[str, Path]) -> None:
    data = office_files["docx"].read_bytes()
    result = extract(data[: len(data) // 2], "word", "docx")
    assert result.error == "corrupt"
    assert result.text == ""


def test_truncated_doc_and_xls(office_files: dict[str, Path]) -> None:
    for fmt in ("doc", "xls"):
        data = office_files[fmt].read_bytes()
        assert extract(data[: len(data) // 3], "word", fmt).error == "corrupt", fmt


@pytest.mark.parametrize("fmt", ["doc", "xls", "xlsx", "docx", "jtd", "jtdc", "ichitaro-dos"])
def test_random_bytes(fmt: str) -> None:
    junk = os.urandom(64 * 1024)
    result = extract(junk, "word", fmt)
    assert result.error == "corrupt"
    assert result.text == ""
    assert result.tables == []


def test_random_bytes_in_an_ole_container_and_dos_header() -> None:
    ole_junk = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + os.urandom(20000)
    for fmt in ("doc", "xls", "jtd", "jtdc"):
        assert extract(ole_junk, "word", fmt).error == "corrupt", fmt
    dos_junk = b"DOC\x00" + b"\x00" * 14 + b"\x02\x00" + os.urandom(8000)
    assert extract(dos_junk, "ichitaro", "ichitaro-dos").error == "corrupt"


def test_unknown_format() -> None:
    assert extract(b"%PDF-1.4", "pdf", "pdf").error == "unsupported:pdf"


def test_output_is_cut_to_the_limit() -> None:
    limits = ExtractLimits(max_output_chars=100)
    result = extract((("あ" * 50 + "\n") * 10).encode("utf-8"), "text", "txt", limits)
    assert result.error == "limit:attachment_chars"
    assert len(result.text) == 100


def _docx_with_text(text: str) -> bytes:
    xml = (
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        f"<w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:body></w:document>"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("word/document.xml", xml)
    return buf.getvalue()


def test_memory_limit_in_child() -> None:
    # reading and parsing a 30 MB document part needs well over 48 MB: the child fails, not us
    data = _docx_with_text("a" * (30 << 20))
    roomy = ExtractLimits(max_output_chars=40_000_000)
    assert len(extract(data, "word", "docx", roomy).text) == 30 << 20
    tight = ExtractLimits(max_output_chars=40_000_000, max_memory_bytes=48 << 20)
    result = extract(data, "word", "docx", tight)
    assert result.error == "memory"
    assert result.text == ""


def _big_xlsx(rows: int) -> bytes:
    """One sheet of `rows` x 3 cells, written by hand (openpyxl would take too long)."""
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    pkg = "http://schemas.openxmlformats.org/package/2006/relationships"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr(
            "_rels/.rels",
            f'<Relationships xmlns="{pkg}"><Relationship Id="rId1" '
            f'Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        )
        zf.writestr(
            "xl/workbook.xml",
            f'<workbook {ns} xmlns:r="{rel}"><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>',
        )
        zf.writestr(
            "xl/_rels/workbook.xml.rels",
            f'<Relationships xmlns="{pkg}"><Relationship Id="rId1" '
            f'Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>',
        )
        with zf.open("xl/worksheets/sheet1.xml", "w") as member:
            member.write(f"<worksheet {ns}><sheetData>".encode())
            for r in range(1, rows + 1):
                member.write(
                    f'<row r="{r}"><c r="A{r}" t="inlineStr"><is><t>意見{r}</t></is></c>'
                    f'<c r="B{r}"><v>{r}</v></c><c r="C{r}"><v>{r}.5</v></c></row>'.encode()
                )
            member.write(b"</sheetData></worksheet>")
    return buf.getvalue()


def test_timeout_kills_a_busy_child() -> None:
    # calamine parses the one big sheet in a single call (seconds), with no deadline check inside:
    # only the parent's timeout can stop it
    data = _big_xlsx(200_000)
    small = extract(_big_xlsx(3), "excel", "xlsx")
    assert small.tables == [[["意見1", "1", "1.5"], ["意見2", "2", "2.5"], ["意見3", "3", "3.5"]]]
    start = time.monotonic()
    # No cell limit in the way: with the default 100,000 cells the child could cut the sheet and answer before the
    # 0.1 s were up on a quick moment (one CI run: limit:sheet_cells), and the test is about the timeout alone.
    result = extract(data, "excel", "xlsx", ExtractLimits(max_seconds=0.1, max_sheet_cells=10**9))
    assert result.error == "timeout"
    assert time.monotonic() - start < 1.5


def test_timeout_inside_a_parser() -> None:
    # a real slow input: a docx whose body is 150 000 paragraphs, with a 0.05 s budget
    body = "".join(f"<w:p><w:r><w:t>段落{i}</w:t></w:r></w:p>" for i in range(150_000))
    xml = (
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        f"<w:body>{body}</w:body></w:document>"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("word/document.xml", xml)
    data = buf.getvalue()
    assert extract(data, "word", "docx").error is None
    start = time.monotonic()
    result = extract(data, "word", "docx", ExtractLimits(max_seconds=0.05))
    assert result.error == "timeout"
    assert time.monotonic() - start < 5


def test_billion_laughs_docx_is_refused() -> None:
    xml = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        "<w:body><w:p><w:r><w:t>&lol2;</w:t></w:r></w:p></w:body></w:document>"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("word/document.xml", xml)
    assert extract(buf.getvalue(), "word", "docx").error == "corrupt"


def test_in_process_matches_child() -> None:
    data = real("ichitaro", "taro2016_basic.jtd")
    assert extract_in_process(data, "ichitaro", "jtd") == extract(data, "ichitaro", "jtd")


def test_password_protected_docx_is_encrypted() -> None:
    from msoffcrypto.format.ooxml import OOXMLFile

    out = io.BytesIO()
    OOXMLFile(io.BytesIO(real("msoffice", "test.docx"))).encrypt("secret", out)
    assert extract(out.getvalue(), "word", "docx").error == "encrypted"
