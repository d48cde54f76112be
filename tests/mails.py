"""Build test mails the way mailers do (CRLF line ends, MIME via the stdlib)."""

from __future__ import annotations

import datetime as dt
import email.policy
from email.message import EmailMessage
from email.utils import format_datetime

IN_WINDOW = dt.datetime(2026, 1, 10, 9, 15, tzinfo=dt.timezone(dt.timedelta(hours=9)))


def mail(
    body: str = "本編 P.3 について意見を提出します。",
    attachments: list[tuple[str, bytes, str]] | None = None,
    subject: str = "意見提出",
    sender: str = "sender@example.jp",
    received: dt.datetime | None = IN_WINDOW,
    html: str | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "security-ai@example.go.jp"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{abs(hash((body, subject, sender)))}@example.jp>"
    msg["Date"] = "Sat, 10 Jan 2026 09:00:00 +0900"
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for name, data, ctype in attachments or []:
        maintype, subtype = ctype.split("/", 1)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    raw = msg.as_bytes(policy=email.policy.SMTP)
    if received is not None:
        trace = f"Received: from mx.example.jp by mail.example.go.jp; {format_datetime(received)}\r\n"
        raw = trace.encode() + raw
    return raw
