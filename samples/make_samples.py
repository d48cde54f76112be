"""Regenerate the bundled demo mails (samples/*.eml): `python samples/make_samples.py`.

They imitate what citizens send: an ISO-2022-JP text comment as Japanese mailers write it, a Word and an
Excel 意見書 with a 該当箇所 / 意見 table, a PDF (not allowed), and an early mail. All names and
addresses are fictitious. The demo adds an EICAR mail at run time (never stored in the repository).
"""

from __future__ import annotations

import email.policy
import sys
from email.header import Header
from email.message import EmailMessage
from email.mime.text import MIMEText
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The 意見書 builder is in the dev kit, which lives in the checkout and is not installed: run as a script,
# this file sees only samples/ on sys.path, so the checkout root goes there too.
sys.path.insert(0, str(HERE.parent))

from devkit.ikensho import ikensho_docx, ikensho_xlsx  # noqa: E402

FIELDS = [("氏名", "総務 花子"), ("住所", "東京都千代田区霞が関二丁目1番2号"), ("電話番号", "03-0000-0000")]
ROWS = [
    ("本編 P.3 第2章", "AIの脆弱性対策について、具体例を追加すべきである。", "現場で判断しやすくするため。"),
    ("別添 P.12", "用語集に「プロンプトインジェクション」を加えてほしい。", "定義が曖昧なため。"),
    ("本編 5頁", "中小企業向けの簡易版を用意してほしい。", "負担が大きいため。"),
]
COMPANY = [("名称", "株式会社サンプル"), ("代表者氏名", "代表 一郎"), ("所在地", "大阪府大阪市北区1-1"),
           ("電子メールアドレス", "contact@sample.example.jp")]


def _received(raw: bytes, date: str) -> bytes:
    """Our MX's trace field goes on top, as a real delivery puts it."""
    return f"Received: from mx.example.jp by mail.example.go.jp; {date}\r\n".encode() + raw


def _base(subject: str, sender: str, date: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "security-ai@example.go.jp"
    msg["Subject"] = subject
    msg["Date"] = date
    msg["Message-ID"] = f"<{abs(hash(subject)) % 10**9}@example.jp>"
    return msg


def iso2022jp_comment() -> bytes:
    body = (
        "氏名：総務 太郎\n住所：東京都千代田区霞が関二丁目1番2号\n電話番号：03-0000-0001\n\n"
        "【意見1】本編（案）P.5 について\nリスク評価の手順を明確にしてほしい。\n"
    )
    part = MIMEText(body, "plain", "iso-2022-jp")
    part["From"] = "taro@example.jp"
    part["To"] = "security-ai@example.go.jp"
    part["Subject"] = Header("意見の提出", "iso-2022-jp").encode()
    part["Date"] = "Sat, 10 Jan 2026 10:00:00 +0900"
    part["Message-ID"] = "<sample-01@example.jp>"
    return _received(part.as_bytes(policy=email.policy.SMTP), "Sat, 10 Jan 2026 10:00:00 +0900")


def word_ikensho() -> bytes:
    form = ikensho_docx(FIELDS, ROWS)
    msg = _base("意見書の提出", "hanako@example.jp", "Mon, 12 Jan 2026 09:30:00 +0900")
    msg.set_content("別添のとおり意見を提出します。\n")
    msg.add_attachment(form, maintype="application",
                       subtype="vnd.openxmlformats-officedocument.wordprocessingml.document", filename="意見書.docx")
    return _received(msg.as_bytes(policy=email.policy.SMTP), msg["Date"])


def excel_ikensho() -> bytes:
    form = ikensho_xlsx(COMPANY, ROWS)
    msg = _base("意見（株式会社サンプル）", "contact@sample.example.jp", "Tue, 20 Jan 2026 14:00:00 +0900")
    msg.set_content("意見書を添付します。\n")
    msg.add_attachment(form, maintype="application",
                       subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet", filename="意見書.xlsx")
    return _received(msg.as_bytes(policy=email.policy.SMTP), msg["Date"])


def pdf_attachment() -> bytes:
    pdf = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
           b"trailer<</Root 1 0 R>>\n%%EOF\n")
    msg = _base("意見（PDF）", "pdf@example.jp", "Wed, 21 Jan 2026 11:00:00 +0900")
    msg.set_content("PDFで提出します。\n")
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="意見.pdf")
    return _received(msg.as_bytes(policy=email.policy.SMTP), msg["Date"])


def early_comment() -> bytes:
    msg = _base("早すぎた意見", "early@example.jp", "Thu, 01 Jan 2026 08:00:00 +0900")
    msg.set_content("氏名：早川 一\n住所：東京都\n\n本編 P.1 について意見します。\n")
    return _received(msg.as_bytes(policy=email.policy.SMTP), "Wed, 24 Dec 2025 08:00:00 +0900")


def main() -> None:
    for name, fn in [
        ("01-iso2022jp-comment.eml", iso2022jp_comment),
        ("02-word-ikensho.eml", word_ikensho),
        ("03-excel-ikensho.eml", excel_ikensho),
        ("04-pdf-not-allowed.eml", pdf_attachment),
        ("05-early.eml", early_comment),
    ]:
        (HERE / name).write_bytes(fn())
        print(name)


if __name__ == "__main__":
    main()
