"""The `[imap]` table of the config file and the mailbox password.

Read through `daemon.config.Section`, so a wrong type reads `imap.<key>: wrong type …` like every other table.
The password is never in the config file: it comes from the environment, a file or a systemd credential.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.config import Config, ConfigError, Section
from daemon.model import ACCEPTED, DUPLICATE, QUARANTINED, REJECTED

DEFAULT_FOLDERS = {
    ACCEPTED: "Intake/Accepted",
    REJECTED: "Intake/Rejected",
    QUARANTINED: "Intake/Quarantine",
    DUPLICATE: "Intake/Duplicate",
}
TWENTY_NINE_MINUTES = 29 * 60


@dataclass(frozen=True)
class ImapConfig:
    host: str
    user: str
    password: str = field(repr=False)
    port: int = 993
    security: str = "tls"  # tls (implicit TLS, certificates verified) | plain (loopback only)
    cafile: str | None = None
    mailbox: str = "INBOX"
    account: str = ""
    folders: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FOLDERS))
    poll_interval: float = 300.0  # without IDLE
    idle_interval: float = TWENTY_NINE_MINUTES  # IDLE is re-issued at least this often
    command_timeout: float = 60.0
    connect_timeout: float = 30.0
    batch_size: int = 100  # UIDs per FETCH / MOVE (aioimaplib's ~1,000-line limit)
    max_in_flight: int = 8
    # Two messages near the 20 MiB limit (and the small ones beside them): with their decoded parts and one
    # parse, about 250 MB at the peak (BENCHMARKS.md); 64 MiB let three in and peaked over 300 MB.
    max_in_flight_bytes: int = 48 * 1024 * 1024
    lease_seconds: float = 300.0
    noop_interval: float = 60.0
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    startup_attempts: int = 5
    use_idle: bool = True
    use_move: bool = True
    use_qresync: bool = True

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_password(section: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """The password comes from $INTAKE_IMAP_PASSWORD, a file (imap.password_file), or a systemd
    credential ($CREDENTIALS_DIRECTORY/<imap.password_credential>, default 'imap-password');
    never from the config file itself."""
    if "password" in section:
        raise ConfigError("imap.password: not allowed in the config file; use imap.password_file, "
                          "$INTAKE_IMAP_PASSWORD or a systemd credential (imap.password_credential)")
    if env.get("INTAKE_IMAP_PASSWORD"):
        return env["INTAKE_IMAP_PASSWORD"]
    path = env.get("INTAKE_IMAP_PASSWORD_FILE") or section.get("password_file")
    if path:
        try:
            return Path(str(path)).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"imap.password_file: cannot be read ({exc.__class__.__name__})") from None
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    name = str(section.get("password_credential", "imap-password"))
    if cred_dir and (Path(cred_dir) / name).is_file():
        return (Path(cred_dir) / name).read_text(encoding="utf-8").rstrip("\r\n")
    raise ConfigError("imap: no password: set imap.password_file, $INTAKE_IMAP_PASSWORD or a systemd credential "
                      f"named {name!r} (LoadCredential=)")


def _positive(section: Section, key: str, default: float) -> float:
    # Not Section.number(positive=True): its text ("must be a positive …") is not this table's established one.
    value = section.number(key, default)
    if value <= 0:
        raise ConfigError(f"{section.where(key)}: must be positive")
    return value


def load_imap_config(config: Config, env: dict[str, str] | None = None) -> ImapConfig | None:
    """The [imap] section of the config file (None when there is none or `enabled = false`)."""
    env = dict(os.environ if env is None else env)
    if config.raw.get("imap") is None and not env.get("INTAKE_IMAP_HOST"):
        return None
    section = Section(config.raw.get("imap"), "imap")
    if section.table.get("enabled", True) is False:
        return None

    host = env.get("INTAKE_IMAP_HOST") or section.get("host", str, "")
    if not host:
        raise ConfigError("imap.host: missing")
    user = env.get("INTAKE_IMAP_USER") or section.get("user", str, "")
    if not user:
        raise ConfigError("imap.user: missing")
    security = section.get("security", str, "tls")
    if security not in ("tls", "plain"):
        raise ConfigError("imap.security: must be 'tls' (implicit TLS) or 'plain'")
    if security == "plain" and not _loopback(host):
        raise ConfigError("imap.security: 'plain' is only allowed to a loopback host; use 'tls'")
    port = int(env.get("INTAKE_IMAP_PORT") or section.port("port", 993 if security == "tls" else 143))
    folders = dict(DEFAULT_FOLDERS)
    extra = section.get("folders", dict, {})
    for status, name in extra.items():
        if status not in DEFAULT_FOLDERS or not isinstance(name, str) or not name:
            raise ConfigError(f"imap.folders.{status}: statuses are {', '.join(DEFAULT_FOLDERS)}; values folder names")
        folders[status] = name
    mailbox = section.get("mailbox", str, "INBOX")
    for name in [mailbox, *folders.values()]:
        if not name.isascii() or any(c in name for c in '"\\\r\n'):
            raise ConfigError(f"imap: folder name {name!r}: use plain ASCII names")
    if mailbox in folders.values():
        raise ConfigError(f"imap.folders: {mailbox!r} is the watched mailbox; choose other folders")
    idle_interval = _positive(section, "idle_interval", TWENTY_NINE_MINUTES)
    if idle_interval > TWENTY_NINE_MINUTES:
        raise ConfigError("imap.idle_interval: at most 1740 seconds (servers drop IDLE clients after 30 minutes)")
    batch = section.integer("batch_size", 100)
    if not 1 <= batch <= 500:
        raise ConfigError("imap.batch_size: between 1 and 500 (aioimaplib fails on responses of ~1,000 lines)")
    cafile = section.get("cafile", str, None)
    return ImapConfig(
        host=host, user=user, password=read_password(section.table, env), port=port, security=security,
        cafile=cafile, mailbox=mailbox,
        account=section.get("account", str, "") or f"{user}@{host}", folders=folders,
        poll_interval=_positive(section, "poll_interval", 300.0), idle_interval=idle_interval,
        command_timeout=_positive(section, "command_timeout", 60.0),
        connect_timeout=_positive(section, "connect_timeout", 30.0),
        batch_size=batch, max_in_flight=max(1, section.integer("max_in_flight", 8)),
        max_in_flight_bytes=max(1, section.integer("max_in_flight_bytes", ImapConfig.max_in_flight_bytes)),
        lease_seconds=_positive(section, "lease_seconds", 300.0),
        noop_interval=_positive(section, "noop_interval", 60.0),
        backoff_initial=_positive(section, "backoff_initial", 1.0),
        backoff_max=_positive(section, "backoff_max", 300.0),
        startup_attempts=max(1, section.integer("startup_attempts", 5)),
        use_idle=bool(section.get("idle", bool, True)), use_move=bool(section.get("move", bool, True)),
        use_qresync=bool(section.get("qresync", bool, True)),
    )
