"""`[web]` in the config: where `intake web` listens, its session cookie, the sign-in lockout's numbers and
the trusted reverse-proxy header for single sign-on."""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from daemon.config import Config, ConfigError, Section

KNOWN = ("listen", "port", "secret_file", "idle_minutes", "cookie_secure", "trusted_user_header",
         "trusted_proxies", "workers")


@dataclass(frozen=True)
class WebSettings:
    listen: str = "127.0.0.1"
    port: int = 8080
    secret_file: Path | None = None  # default <data dir>/web-secret, made on first start (0600)
    idle_minutes: int = 30
    cookie_secure: bool = True
    trusted_user_header: str | None = None
    trusted_proxies: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_config(cls, config: Config) -> WebSettings:
        s = Section.of(config.raw, "web")
        s.reject_unknown(KNOWN)
        proxies = s.get("trusted_proxies", list, [])
        for p in proxies:
            try:
                ipaddress.ip_network(str(p), strict=False)
            except ValueError:
                raise ConfigError(f"web.trusted_proxies: {p!r} is not an IP address or network") from None
        header = s.get("trusted_user_header", str, "") or None
        if header and not proxies:
            raise ConfigError("web.trusted_user_header: needs web.trusted_proxies (the proxy addresses it is"
                              " accepted from)")
        secret = s.get("secret_file", str, "")
        return cls(
            listen=s.get("listen", str, cls.listen),
            port=s.port("port", cls.port),
            secret_file=Path(secret) if secret else config.data_dir / "web-secret",
            idle_minutes=s.integer("idle_minutes", cls.idle_minutes, minimum=1),
            cookie_secure=s.get("cookie_secure", bool, True),
            trusted_user_header=header,
            trusted_proxies=tuple(str(p) for p in proxies),
        )

    def proxy_trusted(self, host: str | None) -> bool:
        if not host or not self.trusted_proxies:
            return False
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(addr in ipaddress.ip_network(p, strict=False) for p in self.trusted_proxies)


def load_secret(settings: WebSettings) -> bytes:
    """The key that signs session cookies: the systemd credential `web-secret`, else the secret file, made
    (32 random bytes, hex, mode 0600) on first start. A secret shorter than 32 characters is refused."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    path = Path(creds) / "web-secret" if creds and (Path(creds) / "web-secret").exists() else settings.secret_file
    assert path is not None
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"web.secret_file: {path} cannot be read ({exc.__class__.__name__})") from None
    if len(value) < 32:
        raise ConfigError(f"web.secret_file: {path} holds fewer than 32 characters")
    return value.encode()
