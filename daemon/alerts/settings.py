"""The `[alerts]` table of the config file: thresholds, routing per category, the channels.

Secrets never live in the config file: the SMTP password (and a webhook URL, which is a secret for
Slack and Teams) come from a file, an environment variable, or systemd's `$CREDENTIALS_DIRECTORY`.

```toml
[alerts]
include_filenames = false        # attachment file names are personal data (R12): off unless allowed
digest_window_seconds = 300      # per category: the first alert at once, the rest as one digest per window
poll_seconds = 2

[alerts.categories.held_too_long]
minutes = 30
channels = ["mail", "webhook"]   # the log always gets every alert
[alerts.categories.scanner_down]
minutes = 5
days = 3                         # signatures older than this
window_seconds = 600             # overrides digest_window_seconds for this category

[alerts.mail]
host = "smtp.example.go.jp"
port = 587
starttls = true
username = "intake-alerts"
password_credential = "smtp-password"   # or password_file = "/etc/intake/smtp.pw", or password_env = "…"
from = "intake@example.go.jp"
to = ["comments-team@example.go.jp"]

[alerts.webhook]
url_env = "INTAKE_ALERT_WEBHOOK"        # or url = "https://…", url_file, url_credential
format = "slack"                        # slack | teams | generic
```
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.headerregistry import Address
from pathlib import Path
from typing import Any

from daemon.alerts.events import CATEGORIES
from daemon.config import Config, ConfigError, Section

CHANNELS = ("mail", "webhook", "log")
WEBHOOK_FORMATS = ("slack", "teams", "generic")

# Defaults when the config says nothing: N minutes (or days) per category.
DEFAULT_MINUTES = {"held_too_long": 30.0, "scanner_down": 5.0, "mailbox_down": 10.0, "storage_error": 15.0}
DEFAULT_DAYS = {"scanner_down": 3.0}


@dataclass(frozen=True)
class MailSettings:
    host: str
    port: int
    from_addr: str
    to: tuple[str, ...]
    starttls: bool = True
    tls: bool = False  # implicit TLS (port 465) instead of STARTTLS
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    timeout: float = 30.0
    hostname: str = "intake.invalid"  # the domain of our own Message-IDs

    def __repr__(self) -> str:  # never print the password
        return f"MailSettings(host={self.host!r}, port={self.port}, to={len(self.to)} address(es))"


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    format: str = "generic"
    timeout: float = 10.0

    def __repr__(self) -> str:  # the URL is a secret for Slack and Teams
        return f"WebhookSettings(format={self.format!r})"


@dataclass(frozen=True)
class CategorySettings:
    channels: tuple[str, ...]
    window_seconds: float
    minutes: float | None = None
    days: float | None = None


@dataclass(frozen=True)
class AlertSettings:
    mail: MailSettings | None = None
    webhook: WebhookSettings | None = None
    categories: Mapping[str, CategorySettings] = field(default_factory=dict)
    include_filenames: bool = False
    poll_seconds: float = 2.0
    backoff_base: float = 5.0
    backoff_max: float = 600.0
    lease_seconds: float = 120.0

    def category(self, name: str) -> CategorySettings:
        found = self.categories.get(name)
        if found is not None:
            return found
        return CategorySettings(channels=self.configured_channels(), window_seconds=300.0,
                                minutes=DEFAULT_MINUTES.get(name), days=DEFAULT_DAYS.get(name))

    def configured_channels(self) -> tuple[str, ...]:
        return (*tuple(c for c, on in (("mail", self.mail), ("webhook", self.webhook)) if on), "log")

    def channels_for(self, category: str) -> tuple[str, ...]:
        """The channels this category goes to: the routed ones that are configured, and always the log."""
        routed = [c for c in self.category(category).channels if c in self.configured_channels()]
        return (*[c for c in routed if c != "log"], "log")

    def minutes(self, category: str) -> float:
        value = self.category(category).minutes
        return DEFAULT_MINUTES.get(category, 0.0) if value is None else value

    def days(self, category: str) -> float:
        value = self.category(category).days
        return DEFAULT_DAYS.get(category, 0.0) if value is None else value


def _table(section: Section, key: str) -> Section:
    """A sub-table (`alerts.mail`, `alerts.categories.<name>` …); missing is empty."""
    value = section.table.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{section.where(key)}: must be a table")
    return Section(value, section.where(key))


def _non_negative(section: Section, key: str, default: float | None) -> float | None:
    value = section.get(key, (int, float), default)
    if value is not None and value < 0:
        raise ConfigError(f"{section.where(key)}: must not be negative")
    return None if value is None else float(value)


def _secret(section: Section, name: str, env: Mapping[str, str], required: bool) -> str | None:
    """A secret from `<name>_file`, `<name>_env` or `<name>_credential` (systemd LoadCredential=)."""
    where = section.name
    sources = [k for k in (f"{name}_file", f"{name}_env", f"{name}_credential") if k in section]
    if len(sources) > 1:
        raise ConfigError(f"{where}: give only one of {', '.join(sources)}")
    if not sources:
        if required:
            raise ConfigError(f"{where}.{name}_file / {name}_env / {name}_credential: missing")
        return None
    key = sources[0]
    ref = section.get(key, str, "")
    if key.endswith("_env"):
        value = env.get(ref)
        if value is None:
            raise ConfigError(f"{where}.{key}: the environment variable {ref} is not set")
        return value.strip()
    if key.endswith("_credential"):
        directory = env.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ConfigError(f"{where}.{key}: $CREDENTIALS_DIRECTORY is not set (systemd LoadCredential=)")
        path = Path(directory) / ref
    else:
        path = Path(ref)
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}.{key}: cannot be read ({exc.__class__.__name__})") from None


def _address(value: Any, where: str) -> str:
    if not isinstance(value, str) or any(c in value for c in "\r\n\0") or not value:
        raise ConfigError(f"{where}: must be one mail address")
    try:
        addr = Address(addr_spec=value)
    except (HeaderParseError, ValueError, IndexError):
        raise ConfigError(f"{where}: {value!r} is not a mail address") from None
    if not addr.domain:
        raise ConfigError(f"{where}: {value!r} is not a mail address")
    return addr.addr_spec


def _mail(mail: Section, env: Mapping[str, str]) -> MailSettings:
    where = mail.name
    if "password" in mail:
        raise ConfigError(f"{where}.password: never in the config file; use password_file, password_env or "
                          "password_credential")
    host = mail.get("host", str, "")
    if not host:
        raise ConfigError(f"{where}.host: missing")
    tls = mail.get("tls", bool, False)
    port = mail.get("port", int, 465 if tls else 587)
    if not 0 < port < 65536:
        raise ConfigError(f"{where}.port: must be 1–65535")
    to = mail.get("to", list, [])
    if not to:
        raise ConfigError(f"{where}.to: at least one address")
    username = mail.get("username", str, None)
    password = _secret(mail, "password", env, required=username is not None)
    if password is not None and username is None:
        raise ConfigError(f"{where}.username: needed with a password")
    from_addr = _address(mail.get("from", str, ""), f"{where}.from")
    return MailSettings(
        host=host, port=port, from_addr=from_addr,
        to=tuple(_address(a, f"{where}.to") for a in to),
        starttls=mail.get("starttls", bool, not tls), tls=tls,
        username=username, password=password,
        ca_file=mail.get("ca_file", str, None),
        timeout=float(_non_negative(mail, "timeout", 30.0) or 30.0),
        hostname=from_addr.rsplit("@", 1)[1],
    )


def _webhook(webhook: Section, env: Mapping[str, str]) -> WebhookSettings:
    where = webhook.name
    url = webhook.get("url", str, None)
    secret = _secret(webhook, "url", env, required=url is None)
    if url is not None and secret is not None:
        raise ConfigError(f"{where}: give url or one of url_file / url_env / url_credential, not both")
    url = url or secret or ""
    if not (url.startswith("https://") or url.startswith("http://")):
        raise ConfigError(f"{where}.url: must be an http(s):// URL")
    fmt = webhook.get("format", str, "generic")
    if fmt not in WEBHOOK_FORMATS:
        raise ConfigError(f"{where}.format: one of {', '.join(WEBHOOK_FORMATS)}")
    return WebhookSettings(url=url, format=fmt, timeout=float(_non_negative(webhook, "timeout", 10.0) or 10.0))


def parse_alert_settings(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> AlertSettings:
    """Validate the config file's `[alerts]` table; a bad value is one ConfigError line naming the key."""
    env = os.environ if env is None else env
    alerts = Section(raw.get("alerts"), "alerts")
    known = {"include_filenames", "digest_window_seconds", "poll_seconds", "backoff_base_seconds",
             "backoff_max_seconds", "categories", "mail", "webhook"}
    for key in alerts.table:
        if key not in known:
            raise ConfigError(f"{alerts.where(key)}: unknown key")
    mail = _mail(_table(alerts, "mail"), env) if "mail" in alerts else None
    webhook = _webhook(_table(alerts, "webhook"), env) if "webhook" in alerts else None
    configured = (*tuple(c for c, on in (("mail", mail), ("webhook", webhook)) if on), "log")
    window = _non_negative(alerts, "digest_window_seconds", 300.0)
    assert window is not None
    cats = _table(alerts, "categories")
    categories: dict[str, CategorySettings] = {}
    for name in cats.table:
        if name not in CATEGORIES:
            raise ConfigError(f"{cats.where(name)}: unknown category (one of {', '.join(CATEGORIES)})")
    for name in CATEGORIES:
        cat = _table(cats, name)
        for key in cat.table:
            if key not in ("channels", "minutes", "days", "window_seconds"):
                raise ConfigError(f"{cat.where(key)}: unknown key")
        channels = cat.get("channels", list, list(configured))
        for channel in channels:
            if channel not in CHANNELS:
                raise ConfigError(f"{cat.where('channels')}: {channel!r} is not one of {', '.join(CHANNELS)}")
            if channel not in configured:
                raise ConfigError(f"{cat.where('channels')}: {channel!r} is routed but [alerts.{channel}] "
                                  "is not configured")
        categories[name] = CategorySettings(
            channels=tuple(channels),
            window_seconds=_non_negative(cat, "window_seconds", window) or 0.0,
            minutes=_non_negative(cat, "minutes", DEFAULT_MINUTES.get(name)),
            days=_non_negative(cat, "days", DEFAULT_DAYS.get(name)),
        )
    poll = _non_negative(alerts, "poll_seconds", 2.0) or 2.0
    return AlertSettings(
        mail=mail, webhook=webhook, categories=categories,
        include_filenames=alerts.get("include_filenames", bool, False),
        poll_seconds=poll,
        backoff_base=_non_negative(alerts, "backoff_base_seconds", 5.0) or 5.0,
        backoff_max=_non_negative(alerts, "backoff_max_seconds", 600.0) or 600.0,
    )


def load_alert_settings(config: Config, env: Mapping[str, str] | None = None) -> AlertSettings:
    return parse_alert_settings(config.raw, env)
