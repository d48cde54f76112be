"""The `[lmtp]` table of the service configuration, read through `daemon.config.Section`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.config import ConfigError, Section


@dataclass(frozen=True)
class LmtpConfig:
    """The `[lmtp]` table of the service configuration.

    enabled        LMTP listeners on (default false)
    socket         Unix socket path for LMTP (default /run/intake/lmtp.sock; "" for none)
    socket_mode    its mode, e.g. 0o660 or "0660" (default 0660)
    socket_group   group of the socket file, e.g. "postfix" (default: unchanged)
    host, port     LMTP over TCP (default host 127.0.0.1, port 0 = off)
    smtp_enabled   an SMTP listener too (default false), on smtp_host / smtp_port (127.0.0.1:2525)
    hostname       the name in the greeting and in the Received: field (default: the FQDN)
    max_transactions  messages run through the pipeline at once; more wait (default 4)
    max_recipients    per transaction; more get 452 4.5.3 and the MTA sends them again (default 100)
    timeout        idle seconds before a connection is closed (default 300)
    """

    enabled: bool = False
    socket: str = "/run/intake/lmtp.sock"
    socket_mode: int = 0o660
    socket_group: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    smtp_enabled: bool = False
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    hostname: str = ""
    max_transactions: int = 4
    max_recipients: int = 100
    timeout: float = 300.0

    @property
    def any_enabled(self) -> bool:
        return (self.enabled and bool(self.socket or self.port)) or self.smtp_enabled

    @classmethod
    def from_config(cls, raw: dict[str, Any]) -> LmtpConfig:
        """Read the `[lmtp]` table of the whole parsed TOML file (`Config.raw`)."""
        section = Section(raw.get("lmtp"), "lmtp")
        section.reject_unknown(cls.__dataclass_fields__)

        mode_value = section.get("socket_mode", (int, str), 0o660)
        if isinstance(mode_value, str):
            try:
                mode_value = int(mode_value, 8)
            except ValueError:
                raise ConfigError("lmtp.socket_mode: must be octal, e.g. \"0660\"") from None
        if not 0 <= mode_value <= 0o777:
            raise ConfigError("lmtp.socket_mode: must be between 0000 and 0777")
        timeout = section.number("timeout", 300.0)
        if timeout <= 0:
            raise ConfigError("lmtp.timeout: must be positive")
        config = cls(
            enabled=section.get("enabled", bool, False),
            socket=section.get("socket", str, cls.socket),
            socket_mode=mode_value,
            socket_group=section.get("socket_group", str, None) or None,
            host=section.get("host", str, cls.host),
            port=section.port("port", 0),
            smtp_enabled=section.get("smtp_enabled", bool, False),
            smtp_host=section.get("smtp_host", str, cls.smtp_host),
            smtp_port=section.port("smtp_port", cls.smtp_port),
            hostname=section.get("hostname", str, ""),
            max_transactions=section.integer("max_transactions", 4, minimum=1),
            max_recipients=section.integer("max_recipients", 100, minimum=1),
            timeout=timeout,
        )
        if config.smtp_enabled and not config.smtp_port:
            raise ConfigError("lmtp.smtp_port: must be set when smtp_enabled")
        return config
