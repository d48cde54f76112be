"""R9a through the real pipeline (real clamd, SQLite and PostgreSQL): the real Word, Excel and Ichitaro files
of ../shared/corpus/real/ and a Shift_JIS text file, attached without labels under a cover note, each yield
their text as the comment; a quarantined mail carries no comment flags; a released PDF-only mail's cover note
is not a 件."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.extract import extract_in_process
from daemon.model import Arrival
from daemon.pipeline import Intake
from daemon.staff.decisions import release
from daemon.store import records
from devkit.clamd import eicar

from conftest import CORPUS
from mails import IN_WINDOW, mail

COVER = "お世話になります。\r\n意見を添付いたします。\r\n山田太郎\r\n"
REAL = [
    ("msoffice/test.docx", "word", "docx"),
    ("msoffice/test_as.docx", "word", "docx"),
    ("msoffice/test.doc", "word", "doc"),
    ("msoffice/test_as.doc", "word", "doc"),
    ("msoffice/test.xlsx", "excel", "xlsx"),
    ("msoffice/test_as.xlsx", "excel", "xlsx"),
    ("msoffice/test.xls", "excel", "xls"),
    ("msoffice/test_as.xls", "excel", "xls"),
    ("ichitaro/taro2016_basic.jtd", "ichitaro", "jtd"),
    ("ichitaro/taro2016_basic_zip.jtdc", "ichitaro", "jtdc"),
    ("ichitaro/taro7_taro2016_basic.jfw", "ichitaro", "jtd"),
    ("ichitaro/ver5_taro2016_basic.jaw", "ichitaro", "ichitaro-dos"),
    ("ichitaro/ver6_taro2016_basic.jbw", "ichitaro", "ichitaro-dos"),
]
TEXT = "本編（案）P.12について\r\n\r\n出力側の検証も明記すべきです。～髙﨑①\r\n"


def ingest(intake: Intake, raw: bytes) -> dict:
    rid = intake.process(Arrival(raw=raw, source="ingest", received_at=IN_WINDOW, received_source="argument")).id
    with intake.sessions() as session:
        msg = records.load(session, rid)
        assert msg is not None
        return records.to_contract(msg)


def squeeze(text: str) -> str:
    return "".join(text.split())


@pytest.mark.parametrize(("name", "kind", "fmt"), REAL, ids=[r[0] for r in REAL])
def test_a_real_file_attached_without_labels_is_the_comment(intake: Intake, name: str, kind: str, fmt: str) -> None:
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"corpus file missing: {path}")
    data = path.read_bytes()
    expected = extract_in_process(data, kind, fmt).text
    assert squeeze(expected)
    rec = ingest(intake, mail(body=COVER, attachments=[(Path(name).name, data, "application/octet-stream")]))
    assert rec["status"] == "accepted", rec["reasons"]
    # every character of the file's text reaches the items; the cover note is none of them
    assert "".join(squeeze(c["text"]) for c in rec["comments"]) == squeeze(expected)
    assert not any("添付" in c["text"] for c in rec["comments"])
    assert rec["submitter"]["name"] == "山田太郎" and rec["submitter"]["guessed"] == ["name"]
    assert "empty" not in rec["flags"] and "missing_name" not in rec["flags"]


def test_a_text_file_in_shift_jis_is_the_comment(intake: Intake) -> None:
    rec = ingest(intake, mail(body=COVER, attachments=[("意見.txt", TEXT.encode("cp932"), "text/plain")]))
    assert rec["status"] == "accepted", rec["reasons"]
    assert [c["text"] for c in rec["comments"]] == [TEXT.replace("\r\n", "\n").strip()]
    assert rec["comments"][0]["targets"] == ["main"] and rec["comments"][0]["pages"] == ["P.12"]
    assert "target_missing" not in rec["flags"] and "page_missing" not in rec["flags"]


def test_a_quarantined_mail_carries_no_comment_flags(intake: Intake) -> None:
    rec = ingest(intake, mail(body="本編P.9について意見。", attachments=[("意見書.txt", eicar(), "text/plain")]))
    assert rec["status"] == "quarantined"
    assert rec["comments"] == []
    assert not set(rec["flags"]) & {"missing_name", "missing_address", "missing_contact", "empty", "target_missing",
                                    "page_missing", "not_japanese", "summary_missing"}


def test_a_released_pdf_only_mail_has_no_cover_note_item(intake: Intake) -> None:
    raw = mail(body="意見書をPDFで添付します。\r\n山田太郎\r\n",
               attachments=[("意見書.pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\n%%EOF\n", "application/pdf")])
    rec = ingest(intake, raw)
    assert rec["status"] == "rejected" and rec["comments"] == []
    assert "empty" in rec["flags"]
    release(intake, rec["id"], "staff", "PDF accepted after review")
    with intake.sessions() as session:
        msg = records.load(session, rec["id"])
        assert msg is not None
        after = records.to_contract(msg)
    assert after["status"] == "accepted" and "released" in after["flags"]
    assert after["comments"] == []  # not a 件: the opinion is in the PDF, for staff to read
