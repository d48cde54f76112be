"""The public export (R11, issue 14.6) on SQLite and PostgreSQL: a submitter's data planted in Japanese, English
and mixed forms, in the body, in attachments and in file names, is in no cell of the public xlsx and csv,
whatever the labels said; the public file has no internal columns and no 統計 sheet."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import docx
import openpyxl
import pytest

from daemon.model import Arrival
from daemon.pipeline import Intake

from mails import IN_WINDOW, mail

JA_BODY = (
    "氏名：山田 太郎\n住所：〒100-8926 東京都千代田区霞が関2-1-2 霞が関ビル5階\n電話：03-1234-5678\n"
    "メール：taro.yamada@example.jp\n\n"
    "本編P.3について、山田の意見です。山田太郎（ヤマダ）は霞が関2丁目で働いています。\n"
    "連絡は ０３－１２３４－５６７８ または taro.yamada@example.jp、〒100-8926 東京都千代田区霞が関2-1-2 まで。\n"
    "同僚の携帯 090-9876-5432、友人 hanako@example.org にも聞きました。\n"
)
EN_TEXT = (
    "Name: John Smith\nAddress: 1-2-3 Roppongi, Minato-ku, Tokyo 106-0032\nPhone: +81 3-1234-5678\n"
    "Email: john.smith@example.com\n\n"
    "別添P.8について意見があります。I am John Smith (SMITH) of Minato City, Tokyo; write to john.smith@example.com "
    "or call +81-3-1234-5678 / +81 90 1111 2222. My office: 4-5-6 Akasaka, Minato-ku, Tokyo 107-0052, Japan.\n"
)
MIXED_DOC = [
    "本編P.20について",
    "佐藤 花子（Hanako Sato）として意見を述べます。佐藤は大阪府大阪市北区梅田1-1-1に住んでおり、SATOとも名乗ります。",
    "電話 06-1111-2222、郵便 530-0001。",
    "佐藤花子",
    "大阪府大阪市北区梅田1-1-1",
]
PLANTED = [
    "山田 太郎", "山田太郎", "山田", "霞が関2-1-2", "霞が関2丁目", "100-8926", "千代田区", "03-1234-5678",
    "０３－１２３４－５６７８", "taro.yamada", "090-9876-5432", "hanako@example.org", "意見書_山田太郎",
    "John", "Smith", "SMITH", "Roppongi", "Minato", "106-0032", "+81 3-1234-5678", "+81-3-1234-5678", "1111 2222",
    "john.smith", "Akasaka", "107-0052",
    "佐藤", "花子", "Hanako", "Sato", "SATO", "梅田1-1-1", "大阪市北区", "06-1111-2222", "530-0001", "意見書_佐藤花子",
]  # fmt: skip
KEPT = ["本編P.3について", "の意見です。", "別添P.8について意見があります。", "として意見を述べます。"]


def free_docx(paragraphs: list[str]) -> bytes:
    d = docx.Document()
    for p in paragraphs:
        d.add_paragraph(p)
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def export(env: dict[str, str], tmp: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run([sys.executable, "-m", "daemon.cli", "export", "--public", *args], env=env,
                          capture_output=True, timeout=300)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode()
    return done


@pytest.fixture
def planted(intake: Intake) -> None:
    mails = [
        mail(body=JA_BODY, sender="Taro Yamada <taro.yamada@example.jp>", subject="意見（山田太郎）",
             attachments=[("意見書_山田太郎.txt", "本編P.4について、山田 太郎の補足です。".encode("cp932"),
                           "text/plain")]),
        mail(body="意見を添付いたします。\nJohn Smith", sender="john.smith@example.com",
             attachments=[("opinion_John_Smith.txt", EN_TEXT.encode(), "text/plain")]),
        mail(body="意見書を送付いたします。よろしくお願いします。\n佐藤 花子", sender="hanako.sato@example.net",
             attachments=[("意見書_佐藤花子.docx", free_docx(MIXED_DOC), "application/octet-stream")]),
    ]
    for raw in mails:
        out = intake.process(Arrival(raw=raw, source="ingest", received_at=IN_WINDOW, received_source="argument"))
        assert out.status == "accepted", out.reasons


def test_no_planted_personal_data_in_any_cell_of_the_public_files(planted: None, env: dict[str, str],
                                                                  tmp_path: Path) -> None:
    xlsx = tmp_path / "public.xlsx"
    export(env, tmp_path, "--format", "xlsx", "-o", str(xlsx))
    wb = openpyxl.load_workbook(xlsx)
    assert wb.sheetnames == ["意見一覧"]  # no 統計 sheet
    rows = [[("" if v is None else str(v)) for v in r] for r in wb["意見一覧"].iter_rows(values_only=True)]
    assert rows[0] == ["項番", "受付日時", "意見提出者", "提出者区分", "該当資料", "該当箇所", "意見", "要旨",
                       "グループ"]
    csv_rows = list(csv.reader(io.StringIO(export(env, tmp_path, "--format", "csv").stdout.decode("utf-8-sig"))))
    assert csv_rows == rows
    cells = [c for r in rows[1:] for c in r]
    assert len(rows) - 1 >= 4  # the body of mail 1, its attachment, the English and the mixed attachments
    for planted_text in PLANTED:
        for cell in cells:
            assert planted_text.casefold() not in cell.casefold(), (planted_text, cell)
    joined = "\n".join(cells)
    for kept in KEPT:  # what the person said stays readable
        assert kept in joined, kept
    assert {r[2] for r in rows[1:]} == {"個人"}
