"""`intake check`: the preflight. One line per item, non-zero exit on any failure; each failure says
what to fix. The systemd unit runs it as ExecStartPre=, so a broken deployment never starts."""

from __future__ import annotations

import datetime as dt
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

from daemon.config import Config, ConfigError, load_config
from daemon.rules import RulesError, load_rules


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    text: str
    warning: bool = False

    def line(self) -> str:
        tag = "ok  " if self.ok and not self.warning else ("warn" if self.ok else "FAIL")
        return f"{tag}  {self.name:<10} {self.text}"


def check_rules(config: Config) -> Result:
    try:
        rules = load_rules(config.rules_path)
    except RulesError as exc:
        return Result("rules", False, f"{exc}")
    return Result("rules", True, f"{rules.path}: {rules.consultation_id}, window {rules.window_start.isoformat()} "
                                 f"… {rules.window_end.isoformat()}")


def check_database(config: Config) -> Iterator[Result]:
    from sqlalchemy.exc import SQLAlchemyError

    from daemon.store import migrate
    from daemon.store.db import make_engine

    engine = make_engine(config.database_url)
    try:
        current = migrate.current_revision(engine)
    except SQLAlchemyError as exc:
        yield Result("database", False, f"unreachable ({exc.__class__.__name__}): check INTAKE_DATABASE_URL "
                                        "/ intake.database_url and that the server runs")
        return
    finally:
        engine.dispose()
    yield Result("database", True, f"{engine.url.get_backend_name()} reachable")
    head = migrate.head_revision(config.database_url)
    if current != head:
        yield Result("migration", False,
                     f"schema at {current or 'nothing'}, code expects {head}: run 'intake db upgrade'")
    else:
        yield Result("migration", True, f"schema at {head}")


def check_raw_store(config: Config) -> Result:
    problems: list[str] = []
    for area in (config.data_dir, config.raw_dir, config.quarantine_dir):
        if not area.exists():
            continue  # created with the right modes on first use
        mode = stat.S_IMODE(area.stat().st_mode)
        if mode & 0o007:
            problems.append(f"{area} is {oct(mode)}")
    for area in (config.raw_dir, config.quarantine_dir):
        if area.exists():
            for sub in _two_levels(area):
                mode = stat.S_IMODE(sub.stat().st_mode)
                if mode & 0o007:
                    problems.append(f"{sub} is {oct(mode)}")
                    break
    if problems:
        return Result("raw store", False, f"readable by others: {problems[0]}: run chmod -R o-rwx {config.data_dir}")
    return Result("raw store", True, f"{config.data_dir} (not readable by others)")


def _two_levels(area: Path) -> Iterator[Path]:
    for first in area.iterdir():
        yield first
        if first.is_dir():
            yield from first.iterdir()


def check_clamd(config: Config, max_age_days: float = 3.0) -> Iterator[Result]:
    from daemon.scanner import Scanner

    scanner = Scanner(config.scan.clamd, timeout=10)
    if not scanner.ping():
        yield Result("clamd", False, f"no answer at {config.scan.clamd}: start clamd or fix INTAKE_CLAMD / scan.clamd")
        return
    version = scanner.version() or ""
    yield Result("clamd", True, f"{config.scan.clamd} answers ({version.split('/')[0]})")
    parts = version.split("/")
    if len(parts) < 3:
        yield Result("signatures", True, "age unknown (no official database loaded: test signatures?)", warning=True)
        return
    try:
        built = parsedate_to_datetime(parts[2].strip())
        if built.tzinfo is None:
            built = built.replace(tzinfo=dt.UTC)
    except (TypeError, ValueError):
        yield Result("signatures", True, f"cannot read the database date from {version!r}", warning=True)
        return
    age = (dt.datetime.now(dt.UTC) - built).total_seconds() / 86400
    if age > max_age_days:
        yield Result("signatures", False, f"database {parts[1]} is {age:.1f} days old: run freshclam / check its timer")
    else:
        yield Result("signatures", True, f"database {parts[1]}, {age:.1f} days old")


# Further checks (IMAP login, alert channels) register here, each yielding Results for a config.
EXTRA_CHECKS: list[Callable[[Config], Iterator[Result]]] = []


def run_checks(config_path: str | None) -> list[Result]:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return [Result("config", False, str(exc))]
    results = [Result("config", True, str(config.source_path or "(defaults and INTAKE_* variables)"))]
    results.append(check_rules(config))
    results.extend(check_database(config))
    results.append(check_raw_store(config))
    max_age = float(config.raw.get("scan", {}).get("max_signature_age_days", 3))
    results.extend(check_clamd(config, max_age))
    for extra in EXTRA_CHECKS:
        results.extend(extra(config))
    return results
