"""The public xlsx export (`intake export --format xlsx --public`, the web's 出力 page) printed as a person would
print it: LibreOffice makes the PDF, poppler reads it. The pages are A4 landscape with every column on the
page, each 意見 beside its 項番, and a long 意見 inside its own row, not drawn over the row below.
The pages are saved in var/documents/ to look at."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import openpyxl
import pytest
import render

from daemon.staff.export import PUBLIC_HEADERS, ExportOptions, rows, write_xlsx
from daemon.staff.query import Item

pytestmark = pytest.mark.skipif(not render.available(), reason="soffice or poppler-utils missing (scripts/setup)")

LONG = "".join(f"（{i}）第{i}条の規定について、対象となる事業者の範囲を明確にし、経過措置を設けるべきです。"
               for i in range(1, 19))
TEXTS = [
    LONG,
    "短い意見です。",
    "一行目の意見。\n二行目の意見。\n三行目の意見。",
    "=1+1",
    "全体として賛成します。",
]
START = dt.datetime(2026, 1, 5, 1, 0, tzinfo=dt.UTC)


def _item(n: int, text: str) -> Item:
    submitter = ({"kind": "organization", "organization": "株式会社サンプル", "representative": "代表取締役 見本太郎"}
                 if n == 2 else {"kind": "individual", "name": "山田 花子"})
    return Item(record_id=100 + n, index=1, received_at=START + dt.timedelta(minutes=n), status="accepted",
                flags=[], submitter=submitter, from_address=None, text=text, targets=["main"], pages=[str(n)],
                location=f"P.{n}", summary=None)


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    table = rows([_item(n, t) for n, t in enumerate(TEXTS, 1)], ExportOptions(public=True))
    path = tmp_path_factory.mktemp("export") / "public.xlsx"
    write_xlsx(path, table, None, public=True)
    pdf = render.to_pdf(path)
    render.save_pages(pdf, "export-public-xlsx")
    return path, pdf


def test_prints_landscape_with_every_column(printed: tuple[Path, Path]) -> None:
    path, pdf = printed
    width, height = render.pdf_page_size(pdf)
    assert width > height, "landscape"
    assert (round(width), round(height)) == (842, 595), "A4"
    pages = render.pdf_page_texts(pdf)
    assert len(pages) == render.pdf_pages(pdf) == 1, "five rows fit on one page once the columns fit its width"
    for head in PUBLIC_HEADERS:
        assert head in pages[0], f"the 「{head}」 column is on the page"
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["意見一覧"], "the public file has no 統計 sheet"
    ws = wb["意見一覧"]
    assert [c.value for c in ws[1]] == PUBLIC_HEADERS
    assert ws.print_title_rows and ws.page_setup.fitToWidth == 1 and ws.page_setup.fitToHeight == 0
    assert all(c.border.top.style == "thin" for row in ws.iter_rows() for c in row)
    assert ws["G5"].value == "=1+1" and ws["G5"].data_type == "s", "a text is never a formula"


def test_each_opinion_beside_its_number_and_whole(printed: tuple[Path, Path]) -> None:
    _, pdf = printed
    lines = render.pdf_text(pdf).splitlines()
    starts = []
    for n, text in enumerate(TEXTS, 1):
        stamp = (START + dt.timedelta(minutes=n)).astimezone(dt.timezone(dt.timedelta(hours=9)))
        first = text.splitlines()[0][:6]
        at = [i for i, line in enumerate(lines) if first in line]
        assert at, f"row {n}: 「{first}」 is not printed"
        # the row's first line holds its 項番, its 受付日時 and the start of its 意見: no column went elsewhere
        assert re.match(rf"\s*{n}\s+{stamp:%Y-%m-%d}", lines[at[0]]), f"row {n}: {lines[at[0]]!r}"
        starts.append(at[0])
    column = render.squeeze("\n".join(render.column_texts(pdf, "意見", "要旨")))
    at = [column.find(render.squeeze(t)) for t in TEXTS]
    assert all(p >= 0 for p in at), "every 意見 whole, none cut off at its row's edge"
    assert at == sorted(at), "in order"
    # the long 意見 ends above the next row: it was not drawn over it
    last_long = max(i for i, line in enumerate(lines) if LONG[-8:] in render.squeeze(line))
    assert last_long < starts[1]


def test_staff_export_prints_the_same_way(tmp_path: Path) -> None:
    """The staff's file (internal columns too) also fits the page width and gives its rows their height."""
    table = rows([_item(n, t) for n, t in enumerate(TEXTS, 1)], ExportOptions(public=False))
    path = tmp_path / "staff.xlsx"
    write_xlsx(path, table, None, public=False)
    pdf = render.to_pdf(path)
    width, height = render.pdf_page_size(pdf)
    assert width > height and render.pdf_pages(pdf) == 1
    column = render.squeeze("\n".join(render.column_texts(pdf, "意見", "要旨")))
    assert render.squeeze(LONG) in column and "短い意見です。" in column
