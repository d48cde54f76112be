"""The `[imap]` table of the config file, the mailbox password and the OAuth 2.0 settings.

Read through `daemon.config.Section`, so a wrong type reads `imap.<key>: wrong type …` like every other table,
and an unknown key is refused (`KNOWN_KEYS`). Secrets are never in the config file: the password and the OAuth
2.0 client secret or certificate come from the environment, a file or a systemd credential.

`auth = "oauth2"` logs in with a bearer token (XOAUTH2 / OAUTHBEARER) from one `token_source`:
`client_credentials` (app-only: Exchange Online's IMAP.AccessAsApp), `refresh_token` (delegated: stored by
`intake imap login`) or `command` (a program that prints a token). `provider = "microsoft"` (the default when
`tenant` is set) or `"google"` fills in the token URL and scope; `"generic"` needs both.
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

# Every key of [imap]; anything else is refused (a typo such as `pasword_file` must not pass silently).
KNOWN_KEYS = (
    "enabled", "host", "port", "user", "security", "cafile", "mailbox", "account", "folders",
    "password_file", "password_credential",
    "poll_interval", "idle_interval", "command_timeout", "connect_timeout", "batch_size", "max_in_flight",
    "max_in_flight_bytes", "lease_seconds", "noop_interval", "backoff_initial", "backoff_max", "startup_attempts",
    "idle", "move", "qresync", "arrivals_connection",
    # OAuth 2.0
    "auth", "mechanism", "token_source", "provider", "tenant", "token_url", "device_code_url", "client_id",
    "client_secret_file", "client_secret_credential", "client_certificate_file", "client_certificate_credential",
    "scope", "token_command", "token_cafile", "token_timeout", "token_renew_seconds", "refresh_token_file",
)
TOKEN_SOURCES = ("client_credentials", "refresh_token", "command")
MECHANISMS = ("auto", "xoauth2", "oauthbearer")
MICROSOFT_LOGIN = "https://login.microsoftonline.com"
EXCHANGE_APP_SCOPE = "https://outlook.office365.com/.default"  # app-only: the IMAP.AccessAsApp permission
EXCHANGE_USER_SCOPE = "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_DEVICE_URL = "https://oauth2.googleapis.com/device/code"
GMAIL_SCOPE = "https://mail.google.com/"


@dataclass(frozen=True)
class OAuth2Config:
    """How the intake obtains the bearer token it logs in with (daemon/sources/imap/tokens.py)."""

    source: str  # client_credentials | refresh_token | command
    provider: str = "generic"  # microsoft | google | generic
    mechanism: str = "auto"  # auto: OAUTHBEARER where the server offers it, else XOAUTH2
    token_url: str = ""
    device_code_url: str = ""
    client_id: str = ""
    client_secret: str | None = field(default=None, repr=False)
    client_certificate: str | None = field(default=None, repr=False)  # PEM: private key and certificate
    scope: str = ""
    command: tuple[str, ...] = ()
    cafile: str | None = None  # CA for the token endpoint (default: the system's)
    timeout: float = 30.0
    renew_before: float = 300.0  # renew (and reconnect) this long before the token expires
    refresh_token_file: Path = Path("imap-refresh-token")


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
    # A second connection, open only while a pass works through a backlog, that looks for new mail every
    # 0.1 s and takes it at once (daemon/sources/imap/sync.py); false: the pass itself looks between groups.
    arrivals_connection: bool = True
    auth: str = "password"  # password | oauth2
    oauth2: OAuth2Config | None = None

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


def read_secret(section: Section, env: Mapping[str, str], what: str, variable: str, default_credential: str,
                required: bool) -> str | None:
    """A secret from $<variable>, imap.<what>_file or the systemd credential imap.<what>_credential."""
    if what in section:
        raise ConfigError(f"imap.{what}: not allowed in the config file; use imap.{what}_file, ${variable} or a "
                          f"systemd credential (imap.{what}_credential)")
    if env.get(variable):
        return env[variable]
    path = section.get(f"{what}_file", str, None)
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"imap.{what}_file: cannot be read ({exc.__class__.__name__})") from None
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    name = section.get(f"{what}_credential", str, default_credential)
    if cred_dir and (Path(cred_dir) / name).is_file():
        return (Path(cred_dir) / name).read_text(encoding="utf-8").strip()
    if required:
        raise ConfigError(f"imap: no {what.replace('_', ' ')}: set imap.{what}_file, ${variable} or a systemd "
                          f"credential named {name!r} (LoadCredential=)")
    return None


def _https(section: Section, key: str, value: str) -> str:
    if value and not value.startswith("https://"):
        raise ConfigError(f"{section.where(key)}: must be an https:// URL")
    return value


def load_oauth2(section: Section, env: Mapping[str, str], data_dir: Path) -> OAuth2Config:
    """The OAuth 2.0 part of [imap]: one token source, the provider's URLs and scope, the client's secret."""
    source = section.get("token_source", str, "")
    if source not in TOKEN_SOURCES:
        raise ConfigError(f"imap.token_source: one of {', '.join(TOKEN_SOURCES)} (auth = 'oauth2')")
    mechanism = section.get("mechanism", str, "auto").lower()
    if mechanism not in MECHANISMS:
        raise ConfigError(f"imap.mechanism: one of {', '.join(MECHANISMS)}")
    tenant = section.get("tenant", str, "")
    provider = section.get("provider", str, "microsoft" if tenant else "generic")
    if provider not in ("microsoft", "google", "generic"):
        raise ConfigError("imap.provider: one of microsoft, google, generic")
    timeout = _positive(section, "token_timeout", 30.0)
    renew = section.number("token_renew_seconds", 300.0, minimum=0)
    cafile = section.get("token_cafile", str, None)
    if source == "command":
        command = section.get("token_command", (str, list), "")
        argv = tuple(command) if isinstance(command, list) else tuple(command.split())
        if not argv or not all(isinstance(a, str) and a for a in argv):
            raise ConfigError("imap.token_command: the program (and its arguments) that prints an access token")
        return OAuth2Config(source=source, provider=provider, mechanism=mechanism, command=argv, timeout=timeout,
                            renew_before=renew)
    client_id = section.get("client_id", str, "")
    if not client_id:
        raise ConfigError("imap.client_id: missing (the application (client) id of the app registration)")
    token_url = _https(section, "token_url", section.get("token_url", str, ""))
    device_url = _https(section, "device_code_url", section.get("device_code_url", str, ""))
    scope = section.get("scope", str, "")
    if provider == "microsoft":
        if not token_url and not tenant:
            raise ConfigError("imap.tenant: missing (the directory (tenant) id or domain of the app registration)")
        token_url = token_url or f"{MICROSOFT_LOGIN}/{tenant}/oauth2/v2.0/token"
        device_url = device_url or f"{MICROSOFT_LOGIN}/{tenant}/oauth2/v2.0/devicecode"
        scope = scope or (EXCHANGE_APP_SCOPE if source == "client_credentials" else EXCHANGE_USER_SCOPE)
    elif provider == "google":
        if source == "client_credentials":
            raise ConfigError("imap.token_source: Gmail has no client-credentials grant for mailboxes; use "
                              "'refresh_token' (intake imap login) or 'command'")
        token_url = token_url or GOOGLE_TOKEN_URL
        device_url = device_url or GOOGLE_DEVICE_URL
        scope = scope or GMAIL_SCOPE
    elif not token_url:
        raise ConfigError("imap.token_url: missing (provider 'generic' needs the token endpoint's https:// URL)")
    if not scope:
        raise ConfigError("imap.scope: missing (provider 'generic' needs the scope to ask for)")
    secret = certificate = None
    if source == "client_credentials":
        certificate = read_secret(section, env, "client_certificate", "INTAKE_IMAP_CLIENT_CERTIFICATE",
                                  "imap-client-certificate", required=False)
        secret = None if certificate else read_secret(section, env, "client_secret", "INTAKE_IMAP_CLIENT_SECRET",
                                                      "imap-client-secret", required=True)
    else:  # refresh_token: a public client (device code) needs no secret; a confidential one may have one
        secret = read_secret(section, env, "client_secret", "INTAKE_IMAP_CLIENT_SECRET", "imap-client-secret",
                             required=False)
    store = Path(section.get("refresh_token_file", str, "") or data_dir / "oauth2" / "imap-refresh-token")
    return OAuth2Config(source=source, provider=provider, mechanism=mechanism, token_url=token_url,
                        device_code_url=device_url, client_id=client_id, client_secret=secret,
                        client_certificate=certificate, scope=scope, cafile=cafile, timeout=timeout,
                        renew_before=renew, refresh_token_file=store)


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
    # A secret in the config file is named as such (not as an unknown key): each raises its own line.
    if "password" in section:
        read_password(section.table, env)
    for secret, variable in (("client_secret", "INTAKE_IMAP_CLIENT_SECRET"),
                             ("client_certificate", "INTAKE_IMAP_CLIENT_CERTIFICATE")):
        if secret in section:
            read_secret(section, env, secret, variable, "", required=False)
    section.reject_unknown(KNOWN_KEYS)
    auth = section.get("auth", str, "password")
    if auth not in ("password", "oauth2"):
        raise ConfigError("imap.auth: 'password' or 'oauth2'")

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
    oauth2 = load_oauth2(section, env, config.data_dir) if auth == "oauth2" else None
    return ImapConfig(
        host=host, user=user, password=read_password(section.table, env) if oauth2 is None else "",
        port=port, security=security, cafile=cafile, mailbox=mailbox, auth=auth, oauth2=oauth2,
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
        arrivals_connection=bool(section.get("arrivals_connection", bool, True)),
    )
