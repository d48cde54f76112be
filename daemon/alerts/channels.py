"""The channels an alert travels: mail to staff (SMTP, STARTTLS, AUTH), a webhook (Slack, Teams, generic
JSON), and the log, always. Each `send` either returns (the channel accepted it) or raises ChannelError
with a short code (never a server's text, which may echo addresses).

Header injection: the mail's headers hold only our own strings (the subject we render from codes and
numbers, the configured addresses, our alert id); the stdlib refuses CR/LF in a header value anyway.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.policy
import json
import re
import ssl
import urllib.error
import urllib.request
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Protocol

import aiosmtplib

from daemon.alerts.events import Rendered, clean
from daemon.alerts.settings import AlertSettings, MailSettings, WebhookSettings
from daemon.logs import get_logger

log = get_logger("alerts")

_ALERT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
FROM_NAME = "意見受付システム"


class ChannelError(RuntimeError):
    """The channel did not accept the alert; str() is a short code (e.g. `smtp:SMTPConnectError`)."""


class Channel(Protocol):
    name: str

    async def send(self, rendered: Rendered) -> None: ...


def _alert_id(rendered: Rendered) -> str:
    if not _ALERT_ID.match(rendered.id):  # ours, but it goes into headers: check anyway
        raise ChannelError("bad_alert_id")
    return rendered.id


# -- mail -----------------------------------------------------------------------------------------------
def build_mail(settings: MailSettings, rendered: Rendered, now: dt.datetime | None = None) -> EmailMessage:
    alert_id = _alert_id(rendered)
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["Subject"] = clean(rendered.subject, 200)
    msg["From"] = Address(display_name=FROM_NAME, addr_spec=settings.from_addr)
    msg["To"] = ", ".join(settings.to)
    msg["Date"] = format_datetime(now or dt.datetime.now(dt.UTC))
    # The same alert always has the same Message-ID: a receiver (or its mail server) can drop a resend.
    msg["Message-ID"] = f"<{alert_id}@{settings.hostname}>"
    msg["X-Intake-Alert-Id"] = alert_id
    msg["X-Intake-Alert-Category"] = rendered.category
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(rendered.text, charset="utf-8", cte="base64")
    return msg


class MailChannel:
    name = "mail"

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings

    def _tls_context(self) -> ssl.SSLContext | None:
        if not self.settings.ca_file:
            return None
        return ssl.create_default_context(cafile=self.settings.ca_file)

    async def send(self, rendered: Rendered) -> None:
        s = self.settings
        message = build_mail(s, rendered)
        try:
            await aiosmtplib.send(
                message, sender=s.from_addr, recipients=list(s.to), hostname=s.host, port=s.port,
                username=s.username, password=s.password, use_tls=s.tls, start_tls=False if s.tls else s.starttls,
                tls_context=self._tls_context(), timeout=s.timeout,
            )
        except aiosmtplib.SMTPResponseException as exc:
            raise ChannelError(f"smtp:{exc.__class__.__name__}:{exc.code}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError) as exc:
            raise ChannelError(f"smtp:{exc.__class__.__name__}") from None


# -- webhook --------------------------------------------------------------------------------------------
def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_body(fmt: str, rendered: Rendered) -> dict[str, Any]:
    """The JSON for Slack (`text`), Microsoft Teams (an Adaptive Card, which both the classic incoming
    webhooks and Workflows' "when a webhook request is received" accept) or a generic receiver."""
    if fmt == "slack":
        return {"text": f"*{_slack_escape(rendered.subject)}*\n{_slack_escape(rendered.text)}"}
    if fmt == "teams":
        blocks: list[dict[str, Any]] = [
            {"type": "TextBlock", "text": rendered.subject, "weight": "Bolder", "size": "Medium", "wrap": True}
        ]
        blocks += [{"type": "TextBlock", "text": line or " ", "wrap": True, "spacing": "None"}
                   for line in rendered.text.split("\n")]
        card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
                "version": "1.4", "body": blocks}
        return {"type": "message",
                "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
                                 "content": card}]}
    return {"id": rendered.id, "category": rendered.category, "mode": rendered.mode, "subject": rendered.subject,
            "text": rendered.text, "records": list(rendered.records), "facts": rendered.facts}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # a redirected POST is not a delivery
        return None


class WebhookChannel:
    name = "webhook"

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self._opener = urllib.request.build_opener(_NoRedirect)

    def _post(self, body: bytes, alert_id: str) -> int:
        request = urllib.request.Request(
            self.settings.url, data=body, method="POST",
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "pubcomment-intake-alerts",
                     "X-Intake-Alert-Id": alert_id, "Idempotency-Key": alert_id},
        )
        with self._opener.open(request, timeout=self.settings.timeout) as response:
            response.read(65536)
            return int(response.status)

    async def send(self, rendered: Rendered) -> None:
        alert_id = _alert_id(rendered)
        body = json.dumps(webhook_body(self.settings.format, rendered), ensure_ascii=False).encode("utf-8")
        try:
            status = await asyncio.to_thread(self._post, body, alert_id)
        except urllib.error.HTTPError as exc:
            raise ChannelError(f"webhook:http_{exc.code}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise ChannelError(f"webhook:{exc.__class__.__name__}") from None
        if not 200 <= status < 300:
            raise ChannelError(f"webhook:http_{status}")


# -- log ------------------------------------------------------------------------------------------------
class LogChannel:
    """Every alert, always, as one structured log line (allowlisted keys only)."""

    name = "log"

    async def send(self, rendered: Rendered) -> None:
        facts = rendered.facts
        log.warning("alert", alert=rendered.id, category=rendered.category, channel="log", action=rendered.mode,
                    count=facts.get("count", 1), records=list(rendered.records[:50]),
                    reasons=facts.get("reasons") or facts.get("by_reason"),
                    signature=facts.get("signature") or facts.get("by_signature") or None,
                    detail=facts.get("kind") or facts.get("what") or facts.get("problem"))


def build_channels(settings: AlertSettings) -> dict[str, Channel]:
    channels: dict[str, Channel] = {"log": LogChannel()}
    if settings.mail is not None:
        channels["mail"] = MailChannel(settings.mail)
    if settings.webhook is not None:
        channels["webhook"] = WebhookChannel(settings.webhook)
    return channels
