"""Comment extraction through the whole pipeline: exact Japanese text from mails built the way real
mailers build them, the 意見書's structure from real Word/Excel files, and the record-level flags."""

from __future__ import annotations

import base64
import email.policy
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon.model import Arrival
from daemon.pipeline import Intake
from daemon.store import records
from daemon.store.db import Message
from devkit.ikensho import ikensho_docx, ikensho_xlsx

from conftest import CORPUS
from japanese import EUC_PROBE, PROBE, percent, to_cp50221
from mails import mail

HEAD = (
    b"Received: from mx.example.jp by mail.example.go.jp; Sat, 10 Jan 2026 09:15:00 +0900\r\n"
    b"From: sender@example.jp\r\nTo: security-ai@example.go.jp\r\nMessage-ID: <probe@example.jp>\r\n"
)


def ingest(intake: Intake, raw: bytes) -> dict:
    rid = intake.process(Arrival(raw=raw, source="ingest")).id
    with intake.sessions() as session:
        msg = records.load(session, rid)
        assert msg is not None
        return records.to_contract(msg)


def body_text(rec: dict) -> str:
    assert rec["status"] == "accepted", rec["reasons"]
    return "\n".join(c["text"] for c in rec["comments"])


def body_entry(rec: dict) -> dict:
    return next(t for t in rec["texts"] if t["source"] == "body")


# -- exact decoding (Done when 2) -------------------------------------------------------------------
def test_iso2022jp_body_as_windows_mailers_write_it(intake: Intake) -> None:
    raw = HEAD + (b"Subject: probe\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n"
                  b"Content-Transfer-Encoding: 7bit\r\n\r\n" + to_cp50221(PROBE) + b"\r\n")
    assert b"\x1b(I" in raw and b"\x1b$B" in raw  # really CP50221 style: JIS X 0208 plus ESC ( I kana
    rec = ingest(intake, raw)
    assert body_text(rec) == PROBE
    assert body_entry(rec)["decoder"] == "cp50221" and body_entry(rec)["replaced"] == 0


def test_iso2022jp_subject(intake: Intake) -> None:
    word = base64.b64encode(to_cp50221(PROBE)).decode()
    raw = HEAD + f"Subject: =?ISO-2022-JP?B?{word}?=\r\n".encode() + b"Content-Type: text/plain\r\n\r\nhello\r\n"
    rec = ingest(intake, raw)
    with intake.sessions() as session:
        assert session.scalars(select(Message.subject).where(Message.id == rec["id"])).one() == PROBE


def test_rfc2231_filename_split_mid_escape(intake: Intake) -> None:
    name = to_cp50221(PROBE + ".txt")
    cut = name.index(b"\x1b$B") + 2  # inside the escape sequence ESC $ | B
    txt = "本編 P.1 についての意見。".encode()
    raw = HEAD + (
        b"Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=BB\r\n\r\n"
        b"--BB\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee attachment\r\n"
        b"--BB\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment;\r\n"
        + f" filename*0*=iso-2022-jp''{percent(name[:cut])};\r\n filename*1*={percent(name[cut:])}\r\n\r\n".encode()
        + base64.encodebytes(txt).replace(b"\n", b"\r\n") + b"--BB--\r\n"
    )
    rec = ingest(intake, raw)
    assert [a["filename"] for a in rec["attachments"]] == [PROBE + ".txt"]
    assert rec["attachments"][0]["verdict"] == "allowed"


@pytest.mark.parametrize("label", ["Shift_JIS", "Windows-31J", "x-sjis"])
def test_cp932_bodies_with_sjis_labels(intake: Intake, label: str) -> None:
    raw = HEAD + (f"Subject: x\r\nContent-Type: text/plain; charset={label}\r\n"
                  "Content-Transfer-Encoding: 8bit\r\n\r\n").encode() + PROBE.encode("cp932") + b"\r\n"
    rec = ingest(intake, raw)
    assert body_text(rec) == PROBE
    assert body_entry(rec)["decoder"] == "cp932"


def test_iso2022jp_without_charset_parameter(intake: Intake) -> None:
    raw = HEAD + b"Subject: x\r\nContent-Type: text/plain\r\n\r\n" + to_cp50221(PROBE) + b"\r\n"
    rec = ingest(intake, raw)
    assert body_text(rec) == PROBE


def test_euc_jp_txt_attachment(intake: Intake) -> None:
    msg = EmailMessage()
    msg["From"] = "sender@example.jp"
    msg["Subject"] = "x"
    msg.set_content("")
    msg.add_attachment(EUC_PROBE.encode("euc_jp"), maintype="text", subtype="plain", filename="意見.txt")
    del msg.get_payload()[1]["Content-Type"]
    msg.get_payload()[1]["Content-Type"] = "text/plain"  # no charset label: the bytes must speak for themselves
    rec = ingest(intake, msg.as_bytes(policy=email.policy.SMTP))
    assert rec["attachments"][0]["kind"] == "text"
    assert body_text(rec) == EUC_PROBE
    [entry] = [t for t in rec["texts"] if t["source"] == "意見.txt"]
    assert entry["decoder"].startswith("euc") and entry["replaced"] == 0


# -- structure (Done when 3) ------------------------------------------------------------------------
ROWS = [
    ("本編 P.3", "用語の定義を明確にすべきである。", "解釈が分かれるため。"),
    ("別添 第2章", "図表の出典を示してほしい。", "検証できないため。"),
    ("本編 5頁", "中小企業向けの手順を追加してほしい。", "負担が大きいため。"),
]
FIELDS = [("名称", "株式会社テスト"), ("代表者氏名", "試験 太郎"), ("所在地", "東京都千代田区霞が関1-1"),
          ("電話番号", "03-0000-0000")]


def word_ikensho() -> bytes:
    return ikensho_docx(FIELDS, ROWS)


def excel_ikensho() -> bytes:
    return ikensho_xlsx(FIELDS, ROWS)


def libreoffice_doc(docx_bytes: bytes, tmp_path: Path) -> bytes:
    src = tmp_path / "ikensho.docx"
    src.write_bytes(docx_bytes)
    subprocess.run(["soffice", f"-env:UserInstallation=file://{tmp_path}/lo", "--headless", "--convert-to", "doc",
                    "--outdir", str(tmp_path), str(src)], check=True, capture_output=True, timeout=180)
    return (tmp_path / "ikensho.doc").read_bytes()


@pytest.mark.parametrize("fmt", ["docx", "doc", "xlsx"])
def test_ikensho_table_gives_three_items_and_the_submitter(intake: Intake, fmt: str, tmp_path: Path) -> None:
    data = {"docx": word_ikensho, "xlsx": excel_ikensho}.get(fmt, lambda: libreoffice_doc(word_ikensho(), tmp_path))()
    raw = mail(body="別添のとおり意見を提出します。", attachments=[(f"意見書.{fmt}", data, "application/octet-stream")])
    rec = ingest(intake, raw)
    assert rec["status"] == "accepted", rec["reasons"]
    items = rec["comments"]
    assert [c["text"].split("\n")[0] for c in items] == [r[1] for r in ROWS]
    assert [c["targets"] for c in items] == [["main"], ["annex"], ["main"]]
    assert [c["pages"] for c in items] == [["P.3"], ["第2章"], ["5頁"]]
    sub = rec["submitter"]
    assert sub["kind"] == "organization" and sub["organization"] == "株式会社テスト"
    assert sub["representative"] == "試験 太郎" and sub["address"] == "東京都千代田区霞が関1-1"
    assert sub["phone"] == "03-0000-0000" and sub["anonymous"] is False
    # The mail body was a cover letter: kept in texts, not an item.
    assert any(t["source"] == "body" for t in rec["texts"])
    assert not any("別添のとおり" in c["text"] for c in items)
    assert not set(rec["flags"]) & {"target_missing", "page_missing", "missing_name", "missing_address"}


@pytest.mark.parametrize(("folder", "name", "expected"), [
    ("ichitaro", "taro2016_basic.jtd", "一太郎"), ("ichitaro", "taro2016_basic_zip.jtdc", "一太郎"),
    ("ichitaro", "ver6_taro2016_basic.jbw", "一太郎"), ("msoffice", "test.doc", "テスト"),
])
def test_attachment_text_reaches_the_record(intake: Intake, folder: str, name: str, expected: str) -> None:
    raw = mail(body="", attachments=[(name, (CORPUS / folder / name).read_bytes(), "application/octet-stream")])
    rec = ingest(intake, raw)
    [entry] = [t for t in rec["texts"] if t["source"] == name]
    assert entry["error"] is None and entry["chars"] > 0
    assert expected in body_text(rec)


# -- flags (Done when 4) ----------------------------------------------------------------------------
def test_summary_missing_on_and_off(intake: Intake) -> None:
    long = "本編P.3について。" + "あ" * 991  # 1,001 characters without whitespace
    assert len(long) == 1001
    on = ingest(intake, mail(body=f"氏名：山田\n住所：東京都\n\n{long}"))
    at_limit = ingest(intake, mail(body=f"氏名：山田\n住所：東京都\n\n{long[:-1]}"))
    assert "summary_missing" not in at_limit["flags"]
    off = ingest(intake, mail(body=f"氏名：山田\n住所：東京都\n\n【要旨】長い意見の要旨です。\n\n【意見1】\n{long}"))
    assert "summary_missing" in on["flags"]
    assert "summary_missing" not in off["flags"]


def test_not_japanese_on_and_off(intake: Intake) -> None:
    en = ingest(intake, mail(body="Name: John\nAddress: Tokyo\n\nThe main draft page 3 should define the terms."))
    ja = ingest(intake, mail(body="氏名：山田\n住所：東京都\n\n本編 P.3 の用語を定義してください。"))
    assert "not_japanese" in en["flags"] and "not_japanese" not in ja["flags"]


def test_anonymous_organisation(intake: Intake) -> None:
    body = "名称：株式会社サンプル（匿名希望）\n代表者氏名：見本 一郎\n所在地：大阪府\n\n本編 P.2 への意見。"
    rec = ingest(intake, mail(body=body))
    assert rec["submitter"]["kind"] == "organization" and rec["submitter"]["anonymous"] is True


def test_missing_name_and_address_on_and_off(intake: Intake) -> None:
    bare = ingest(intake, mail(body="本編 P.3 について意見します。"))
    full = ingest(intake, mail(body="氏名：山田 花子\n住所：東京都港区\n\n本編 P.4 について意見します。"))
    assert {"missing_name", "missing_address"} <= set(bare["flags"])
    assert not {"missing_name", "missing_address", "missing_contact"} & set(full["flags"])
    assert full["submitter"]["email"] == "sender@example.jp"  # the From address counts as a contact


def test_same_text_from_two_senders_is_duplicate_text(intake: Intake) -> None:
    text = "氏名：{}\n住所：東京都\n\n本編 P.3 の定義を見直してください。"
    first = ingest(intake, mail(body=text.format("一郎"), sender="a@example.jp"))
    second = ingest(intake, mail(body=text.format("二郎").replace("ください。", "ください 。"), sender="b@example.jp"))
    other = ingest(intake, mail(body=text.format("三郎").replace("定義", "構成"), sender="c@example.jp"))
    assert "duplicate_text" not in first["flags"]
    assert "duplicate_text" in second["flags"] and second["duplicate_text_of"] == first["id"]
    assert second["status"] == "accepted"
    assert "duplicate_text" not in other["flags"] and other["duplicate_text_of"] is None


def test_empty_and_extraction_failed(intake: Intake) -> None:
    empty = ingest(intake, mail(body=""))
    assert "empty" in empty["flags"]
    broken = ingest(intake, mail(body="本編 P.1 の意見", attachments=[("壊れ.jsw", (CORPUS / "ichitaro" /
                                                                      "ver4_taro2016_basic.jsw").read_bytes(),
                                                                      "application/octet-stream")]))
    assert "extraction_failed" in broken["flags"] and broken["status"] == "accepted"
    assert "extraction_failed" not in empty["flags"]


# -- show (Done when 5) -----------------------------------------------------------------------------
def test_show_prints_comments_and_submitter(intake: Intake, env: dict[str, str]) -> None:
    raw = mail(body="x", attachments=[("意見書.docx", word_ikensho(), "application/octet-stream")])
    rec = ingest(intake, raw)
    out = subprocess.run([sys.executable, "-m", "daemon.cli", "show", str(rec["id"])], env=env,
                         capture_output=True, timeout=120)
    text = out.stdout.decode()
    assert out.returncode == 0
    assert "株式会社テスト" in text and "organization" in text
    for _loc, opinion, _reason in ROWS:
        assert opinion in text
    assert "targets=main" in text and "pages=P.3" in text
