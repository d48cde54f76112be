"""The result document 「提出された意見及び考え方」 as a reader sees it: the Word and Excel files are printed to PDF
by LibreOffice and read back with poppler. Every 意見 is there in full, in its section after its heading, with
its number, its 同旨 count and its answer on the same page; the header row is on every page; the pages are A4
landscape and no column is pushed onto a page of its own. The pages are saved in var/documents/ to look at."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
import render

from daemon.staff.result_docs import H_ANSWER, H_NUMBER, H_OPINION, H_REVISED, write_docx, write_xlsx
from daemon.staff.result_model import ResultDocument, ResultRow, ResultSection

pytestmark = pytest.mark.skipif(not render.available(), reason="soffice or poppler-utils missing (scripts/setup)")

LONG = "".join(
    f"第{i}に、生成AIの利用に伴うリスクの評価手順を明確にすべきである。事業者ごとの差が大きく、利用者の保護に欠ける。"
    for i in range(1, 80))[:2986] + "以上で私の意見を終わります。"  # 3,000 characters, a unique end
REVISED_ANSWER = ("御意見を踏まえ、次のとおり修正します。\n（修正前）事業者は、リスクを評価する。\n"
                  "（修正後）事業者は、別表に定める手順によりリスクを評価し、その結果を公表する。")
ANSWERS = {"=": "=1+1", "w": "<w:p>段落</w:p>", "h": '=HYPERLINK("http://example.com/","click")'}


def _row(number: str, opinion: str, answer: str = "御意見として承ります。", revised: str | None = "無", same: int = 1,
         who: tuple[str, ...] = ("個人",)) -> ResultRow:
    return ResultRow(number, opinion, answer, revised, same, who)


SECTIONS = (
    ResultSection(1, "本編 第1章 総則", (
        _row("意見1-1", LONG, "御意見として承ります。今後の検討の参考とさせていただきます。"),
        _row("意見1-2", "第2条の定義が不明確です。「AIシステム」の範囲を明記すべきです。", REVISED_ANSWER, "有",
             who=("株式会社テスト",)),
        _row("意見1-3", "<script>alert('x')</script> という文字列が画面に出ても安全であるべきです。", ANSWERS["="]),
        _row("意見1-4", "]]><![CDATA[ のような文字列もそのまま載せてください。", ANSWERS["w"]),
        _row("意見1-5", "制御\x01文字\x0bを\x1f含む意見です。", ANSWERS["h"], None),
    )),
    ResultSection(2, "本編 第2章 AIシステムへの脅威", (
        _row("意見2-1", "攻撃の類型として、データ汚染を明記すべきです。"),
        _row("意見2-2", "本案に賛成します。早期の施行を求めます。", "", None, same=4,
             who=("個人", "個人", "法人・団体（匿名希望）", "個人")),
        _row("意見2-3", "プロンプトインジェクションへの対策を\n具体的に\n示してください。"),
        _row("意見2-4", "=SUM(1,2) のような式で始まる意見も文字のまま表示されるべきです。"),
    )),
    ResultSection(3, "その他・全般", (
        _row("意見3-1", "意見募集の期間をもう少し長くしてほしい。"),
        _row("意見3-2", "説明会を開催してください。", ""),
        _row("意見3-3", "全体として分かりやすい案だと思います。"),
    )),
    ResultSection(4, "別添 空の節", ()),
)
SUBMITTERS = ("個人", "株式会社テスト", "個人", "@SUM(1)研究会", "個人", "法人・団体（匿名希望）", "個人", "個人",
              "一般社団法人サンプル協会 会長 見本一郎", "個人")
DOC = ResultDocument(
    title="「AIセキュリティガイドライン（案）」に対する意見募集で提出された意見及び総務省の考え方",
    consultation="AIセキュリティガイドライン（案）",
    period="令和7年12月26日（金）～令和8年1月29日（木）",
    submitters=SUBMITTERS,
    items=15,
    sections=SECTIONS,
)
ROWS = [r for s in SECTIONS for r in s.rows]
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
_PAGE_NUMBER = re.compile(r"^\s*-\s*\d+\s*-\s*$")


def _printed(text: str) -> str:
    """What a text looks like once printed and read back: no control characters, no whitespace."""
    return render.squeeze(_CONTROL.sub("", text))


def _column(pdf: Path, header: str, next_header: str | None) -> str:
    lines = "\n".join(render.column_texts(pdf, header, next_header)).splitlines()
    return render.squeeze("\n".join(x for x in lines if not _PAGE_NUMBER.match(x)))


def _numbers(pdf: Path) -> list[str]:
    column = "\n".join(render.column_texts(pdf, H_NUMBER, H_OPINION))
    found = re.findall(r"意見\s*(\d+)\s*-\s*(\d+)(?!\d)", column)  # line by line: a heading may follow
    out: list[str] = []
    for a, b in found:
        n = f"意見{a}-{b}"
        if not out or out[-1] != n:  # a row continued on the next sheet row or page shows its number again
            out.append(n)
    return out


@pytest.fixture(scope="module")
def docx_pdf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("result") / "result.docx"
    write_docx(path, DOC)
    pdf = render.to_pdf(path)
    render.save_pages(pdf, "result-docx")
    yield pdf


@pytest.fixture(scope="module")
def xlsx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("result") / "result.xlsx"
    with path.open("wb") as f:  # a binary stream, as the web download writes it
        write_xlsx(f, DOC)
    return path


@pytest.fixture(scope="module")
def xlsx_pdf(xlsx_file: Path) -> Iterator[Path]:
    pdf = render.to_pdf(xlsx_file)
    render.save_pages(pdf, "result-xlsx")
    yield pdf


@pytest.fixture(params=["docx", "xlsx"])
def pdf(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(f"{request.param}_pdf")


def test_every_opinion_in_full_in_its_section(pdf: Path) -> None:
    opinions = _column(pdf, H_OPINION, H_ANSWER)
    for row in ROWS:
        assert _printed(row.opinion) in opinions, f"{row.number} is not printed whole"
    assert opinions.count(_printed(LONG)) == 1
    whole = render.squeeze(render.pdf_text(pdf))
    starts = [whole.find(_printed(s.heading)) for s in SECTIONS if s.rows]
    assert all(p >= 0 for p in starts) and starts == sorted(starts), "the section headings, in order"
    assert _printed(SECTIONS[3].heading) not in whole, "a section without rows is left out"
    for n, sec in enumerate(s for s in SECTIONS if s.rows):
        end = starts[n + 1] if n + 1 < len(starts) else len(whole)
        for row in sec.rows:
            at = whole.find(_printed(row.opinion)[:12], starts[n])
            assert starts[n] < at < end, f"{row.number} is not under 「{sec.heading}」"


def test_numbers_groups_answers_and_list(pdf: Path) -> None:
    assert _numbers(pdf) == [r.number for r in ROWS]
    opinions = _column(pdf, H_OPINION, H_ANSWER)
    assert opinions.count("（同旨4件）") == 1 and "同旨1件" not in opinions
    assert "【意見提出者】個人、個人、法人・団体（匿名希望）、個人" in opinions
    answers = _column(pdf, H_ANSWER, H_REVISED)
    for r in ROWS:
        assert _printed(r.answer) in answers, f"the answer to {r.number}"
    whole = render.squeeze(render.pdf_text(pdf))
    assert "計10者（15件）（意見提出順、敬称略）" in whole
    assert _printed("@SUM(1)研究会") in whole and _printed(SUBMITTERS[8]) in whole
    assert "None" not in whole, "an empty answer is printed empty"
    for hostile in ("<script>alert('x')</script>", "]]><![CDATA[", "=1+1", "<w:p>段落</w:p>",
                    '=HYPERLINK("http://example.com/","click")', "=SUM(1,2)"):
        assert _printed(hostile) in whole, hostile
    revised = _column(pdf, H_REVISED, None)
    assert revised.count("有") == 1 and revised.count("無") == 9


def test_landscape_and_header_on_every_page(pdf: Path) -> None:
    width, height = render.pdf_page_size(pdf)
    assert (round(width), round(height)) == (842, 595), "A4 landscape"
    pages = render.pdf_page_texts(pdf)
    assert len(pages) == render.pdf_pages(pdf) >= 3, "the 3,000-character opinion needs more than one page"
    assert "意見提出者一覧" in pages[0] and "受付順" in pages[0]
    opinions = render.column_texts(pdf, H_OPINION, H_ANSWER)
    for n, page in enumerate(pages[1:], 2):
        # the whole header row on every page of the table: no column was pushed onto a page of its own
        for head in (H_NUMBER, H_OPINION, H_ANSWER, H_REVISED):
            assert head in page, f"page {n} has no 「{head}」 header"
        # …and under it a row, or the continuation of one: no page of the table is a blank or a column slice
        assert re.search(r"意見\s*\d+\s*-\s*\d+", page) or opinions[n - 1].strip(), f"page {n} holds no row"


def test_docx_long_row_breaks_across_pages(docx_pdf: Path) -> None:
    """The 3,000-character opinion runs over pages inside its one row (rows may break across pages)."""
    per_page = [render.squeeze(t) for t in render.column_texts(docx_pdf, H_OPINION, H_ANSWER)]
    long = _printed(LONG)
    first = next(n for n, t in enumerate(per_page) if long[:20] in t)
    last = next(n for n, t in enumerate(per_page) if long[-20:] in t)
    assert last > first, "the long opinion should continue on the next page"
    assert _numbers(docx_pdf).count("意見1-1") == 1, "…as one row, numbered once"


def test_xlsx_answer_on_the_page_of_its_number(xlsx_pdf: Path) -> None:
    pages = [render.squeeze(p) for p in render.pdf_page_texts(xlsx_pdf)]
    for r in ROWS:
        if not r.answer:
            continue
        number_page = next(n for n, p in enumerate(pages) if re.search(re.escape(r.number) + r"(?!\d)", p))
        assert _printed(r.answer)[:10] in pages[number_page], f"the answer to {r.number} is not beside it"
    # the list of submitters is one page, the table the rest; a column split would double the table's pages
    assert sum(1 for p in pages if "受付順" in p) == 1


def test_xlsx_cells_are_text_with_borders_and_heights(xlsx_file: Path) -> None:
    wb = openpyxl.load_workbook(xlsx_file)
    assert wb.sheetnames == ["意見提出者一覧", "提出された意見及び考え方"]
    ws = wb["提出された意見及び考え方"]
    cells = {c.value: c for row in ws.iter_rows() for c in row if isinstance(c.value, str)}
    for text in ("=1+1", '=HYPERLINK("http://example.com/","click")'):
        assert cells[text].data_type == "s", f"{text} must stay text"
    listed = {c.value: c for c in wb["意見提出者一覧"]["B"] if c.value}
    assert listed["@SUM(1)研究会"].data_type == "s"
    assert ws.page_setup.orientation == "landscape" and ws.page_setup.fitToWidth == 1
    assert ws.page_setup.fitToHeight == 0 and ws.sheet_properties.pageSetUpPr.fitToPage
    assert ws.print_title_rows and ws.print_title_rows.startswith("$3:$3")
    first = cells["意見1-1"]
    assert first.border.left.style == "thin" and first.border.bottom.style == "thin"
    heights = [ws.row_dimensions[c.row].height for c in ws["B"] if c.value]
    assert all(h and 0 < h <= 409 for h in heights)
    assert max(heights) > 200, "the long opinion's rows are tall"
