"""Service configuration: a TOML file, with INTAKE_* environment variables overriding it.

Public names (other tools rely on them): INTAKE_CONFIG (the file), INTAKE_DATABASE_URL,
INTAKE_DATA_DIR, INTAKE_RULES, INTAKE_CLAMD. Per-consultation policy is not here: it is in rules/.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RULES = PACKAGE_ROOT / "rules" / "consultation.toml"
DEFAULT_CONFIG_PATHS = (Path("/etc/intake/intake.toml"),)


class ConfigError(ValueError):
    """A configuration that cannot be used; str() is one line naming the key."""


# The strict configuration: a table or key the code does not read is an error (a typo such as `[lmpt]` or
# `socket_path` must not pass silently). Each table refuses its own unknown keys where it is read; these
# are the tables themselves and the keys of [intake] and [scan], read here. A new table or key goes here too.
SECTIONS = ("intake", "scan", "imap", "lmtp", "service", "alerts", "metrics", "retention", "staff", "web")
INTAKE_KEYS = ("data_dir", "database_url", "rules", "staff_group", "max_attempts", "parse_memory_bytes",
               "message_budget_seconds")
SCAN_KEYS = ("clamd", "timeout", "max_signature_age_days")


@dataclass(frozen=True)
class ScanConfig:
    # One clamd URL, or several separated by ", " (a `clamd = [...]` list is kept joined, so every
    # `Scanner(config.scan.clamd, …)` gets the whole pool; daemon/scanner.py splits it again).
    clamd: str = "unix:///run/clamav/clamd.ctl"
    timeout: float = 60.0

    @property
    def clamd_urls(self) -> tuple[str, ...]:
        from daemon.scanner import split_urls

        return split_urls(self.clamd)


@dataclass(frozen=True)
class Config:
    data_dir: Path
    database_url: str
    rules_path: Path
    scan: ScanConfig = field(default_factory=ScanConfig)
    staff_group: str | None = None
    # Failures caused by the message itself (parser crash, extraction timeout) are retried this
    # many times, then the record is rejected as processing_failed, so one poison mail cannot block.
    max_attempts: int = 3
    # Parses run side by side while their estimated peaks (4x the message size, daemon/budget.py) fit in
    # this; the default lets one 20 MiB message parse beside the small ones, never two near the limit.
    parse_memory_bytes: int = 128 * 1024 * 1024
    # The watchdog: the wall-clock seconds one message may spend in the stages (clamd's time not counted);
    # past it the record is rejected / processing_failed at once, raw bytes kept (issue 16).
    message_budget_seconds: float = 60.0
    source_path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"


class Section:
    """One table of the config file, read with its types checked: every error is one line naming 'table.key'.

    Every section (intake, scan, imap, lmtp, service, alerts …) is read through this, so a wrong type or a
    bad number is reported the same way everywhere."""

    def __init__(self, data: Any, name: str) -> None:
        self.name = name
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"[{name}]: must be a table")
        self.table: dict[str, Any] = data

    @classmethod
    def of(cls, raw: dict[str, Any], dotted: str) -> Section:
        """The table at a dotted path of the parsed file ('alerts.mail'); missing is empty."""
        cur: Any = raw
        for part in dotted.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        return cls(cur, dotted)

    def reject_unknown(self, known: Iterable[str], hint: str = "") -> None:
        """Refuse keys this section does not have (a typo such as `socket_path` for `socket` must not pass
        silently): one line naming the first unknown key and the known ones."""
        names = sorted(set(known))
        for key in self.table:
            if key not in names:
                raise ConfigError(f"{self.where(key)}: unknown key (known: {', '.join(names)}){hint}")

    def __contains__(self, key: str) -> bool:
        return key in self.table

    def where(self, key: str) -> str:
        return f"{self.name}.{key}"

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        if key not in self.table:
            return default
        value = self.table[key]
        bool_ok = kind is bool or (isinstance(kind, tuple) and bool in kind)
        if not isinstance(value, kind) or (isinstance(value, bool) and not bool_ok):
            raise ConfigError(f"{self.where(key)}: wrong type {type(value).__name__}")
        return value

    def number(self, key: str, default: float, *, minimum: float | None = None, positive: bool = False,
               what: str = "number") -> float:
        """A number (int or float); `positive` refuses 0 and below, `minimum` anything under it."""
        value = float(self.get(key, (int, float), default))
        if positive and value <= 0:
            raise ConfigError(f"{self.where(key)}: must be a positive {what}")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{self.where(key)}: must be at least {minimum:g}")
        return value

    def integer(self, key: str, default: int, *, minimum: int | None = None, message: str | None = None) -> int:
        value = int(self.get(key, int, default))
        if minimum is not None and value < minimum:
            raise ConfigError(f"{self.where(key)}: {message or f'must be at least {minimum}'}")
        return value

    def port(self, key: str, default: int) -> int:
        value = int(self.get(key, int, default))
        if not 0 <= value <= 65535:
            raise ConfigError(f"{self.where(key)}: must be 0..65535")
        return value


def _section(data: dict[str, Any], name: str) -> Section:
    return Section(data.get(name), name)


def _clamd_setting(env: dict[str, str], scan: Section) -> str:
    """INTAKE_CLAMD, else `[scan] clamd`: one URL (a string, as always) or several (a list, or one string with
    URLs separated by commas or spaces). Every URL is checked here: a bad one is one line naming the key."""
    from daemon.scanner import split_urls, url_problem

    if env.get("INTAKE_CLAMD"):
        value: str | list[Any] = env["INTAKE_CLAMD"]
        where = "INTAKE_CLAMD"
    else:
        value = scan.get("clamd", (str, list), ScanConfig.clamd)
        where = scan.where("clamd")
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"{where}: the list is empty (name at least one clamd)")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(f"{where}[{i}]: wrong type {type(item).__name__} (a URL string)")
    urls = split_urls(value)
    if len(urls) == 1 and isinstance(value, str):
        if not (value.startswith("unix://") or value.startswith("tcp://")):  # one URL: the check it always had
            raise ConfigError(f"scan.clamd / INTAKE_CLAMD: {value!r} must be unix:///path or tcp://host:port")
    for i, url in enumerate(urls):
        problem = url_problem(url)
        if problem:
            raise ConfigError(f"{where}" + (f"[{i}]" if len(urls) > 1 else "") + f": {problem}")
    return urls[0] if len(urls) == 1 else ", ".join(urls)


def load_config(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Config:
    env = dict(os.environ if env is None else env)
    file_path: Path | None = None
    if path is not None:
        file_path = Path(path)
    elif env.get("INTAKE_CONFIG"):
        file_path = Path(env["INTAKE_CONFIG"])
    else:
        file_path = next((p for p in DEFAULT_CONFIG_PATHS if p.exists()), None)

    data: dict[str, Any] = {}
    if file_path is not None:
        try:
            data = tomllib.loads(file_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{file_path}: config file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file_path}: cannot be read: {exc.__class__.__name__}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file_path}: not valid TOML: {exc}") from None

    for name in data:
        if name not in SECTIONS:
            raise ConfigError(f"[{name}]: unknown table (known: {', '.join(SECTIONS)})")
    intake = _section(data, "intake")
    scan = _section(data, "scan")
    intake.reject_unknown(INTAKE_KEYS)
    scan.reject_unknown(SCAN_KEYS)

    data_dir = Path(
        env.get("INTAKE_DATA_DIR")
        or intake.get("data_dir", str, "")
        or Path.home() / ".local" / "share" / "intake"
    )
    database_url = (
        env.get("INTAKE_DATABASE_URL")
        or intake.get("database_url", str, "")
        or f"sqlite:///{data_dir / 'intake.db'}"
    )
    rules_path = Path(env.get("INTAKE_RULES") or intake.get("rules", str, "") or DEFAULT_RULES)
    clamd = _clamd_setting(env, scan)
    timeout = scan.number("timeout", ScanConfig.timeout, positive=True, what="number of seconds")
    scan.number("max_signature_age_days", 3.0, positive=True, what="number of days")  # read by `intake check`
    max_attempts = intake.integer("max_attempts", 3, minimum=1)
    parse_memory = intake.integer("parse_memory_bytes", Config.parse_memory_bytes, minimum=1024 * 1024,
                                  message="must be at least 1048576 (1 MiB)")
    message_budget = intake.number("message_budget_seconds", Config.message_budget_seconds, positive=True,
                                   what="number of seconds")
    return Config(
        data_dir=data_dir,
        database_url=database_url,
        rules_path=rules_path,
        scan=ScanConfig(clamd=clamd, timeout=timeout),
        staff_group=intake.get("staff_group", str, None),
        max_attempts=max_attempts,
        parse_memory_bytes=parse_memory,
        message_budget_seconds=message_budget,
        source_path=file_path,
        raw=data,
    )
