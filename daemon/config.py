"""Service configuration: a TOML file, with INTAKE_* environment variables overriding it.

Public names (other tools rely on them): INTAKE_CONFIG (the file), INTAKE_DATABASE_URL,
INTAKE_DATA_DIR, INTAKE_RULES, INTAKE_CLAMD. Per-consultation policy is not here: it is in rules/.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RULES = PACKAGE_ROOT / "rules" / "consultation.toml"
DEFAULT_CONFIG_PATHS = (Path("/etc/intake/intake.toml"),)


class ConfigError(ValueError):
    """A configuration that cannot be used; str() is one line naming the key."""


@dataclass(frozen=True)
class ScanConfig:
    clamd: str = "unix:///run/clamav/clamd.ctl"
    timeout: float = 60.0


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
    source_path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}]: must be a table")
    return value


def _typed(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any) -> Any:
    if key not in table:
        return default
    value = table[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"{where}.{key}: wrong type {type(value).__name__}")
    return value


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

    intake = _section(data, "intake")
    scan = _section(data, "scan")

    data_dir = Path(
        env.get("INTAKE_DATA_DIR")
        or _typed(intake, "data_dir", str, "intake", "")
        or Path.home() / ".local" / "share" / "intake"
    )
    database_url = (
        env.get("INTAKE_DATABASE_URL")
        or _typed(intake, "database_url", str, "intake", "")
        or f"sqlite:///{data_dir / 'intake.db'}"
    )
    rules_path = Path(env.get("INTAKE_RULES") or _typed(intake, "rules", str, "intake", "") or DEFAULT_RULES)
    clamd = env.get("INTAKE_CLAMD") or _typed(scan, "clamd", str, "scan", ScanConfig.clamd)
    if not (clamd.startswith("unix://") or clamd.startswith("tcp://")):
        raise ConfigError(f"scan.clamd / INTAKE_CLAMD: {clamd!r} must be unix:///path or tcp://host:port")
    timeout = float(_typed(scan, "timeout", (int, float), "scan", ScanConfig.timeout))
    max_attempts = _typed(intake, "max_attempts", int, "intake", 3)
    if max_attempts < 1:
        raise ConfigError("intake.max_attempts: must be at least 1")
    parse_memory = _typed(intake, "parse_memory_bytes", int, "intake", Config.parse_memory_bytes)
    if parse_memory < 1024 * 1024:
        raise ConfigError("intake.parse_memory_bytes: must be at least 1048576 (1 MiB)")
    return Config(
        data_dir=data_dir,
        database_url=database_url,
        rules_path=rules_path,
        scan=ScanConfig(clamd=clamd, timeout=timeout),
        staff_group=_typed(intake, "staff_group", str, "intake", None),
        max_attempts=max_attempts,
        parse_memory_bytes=parse_memory,
        source_path=file_path,
        raw=data,
    )
