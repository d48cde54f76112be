"""`intake check`: the preflight. One line per item, non-zero exit on any failure; each failure says
what to fix. The systemd unit runs it as ExecStartPre=, so a broken deployment never starts."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from daemon.cli.common import EXIT_FAILED
from daemon.config import Config, ConfigError, load_config
from daemon.rules import RulesError, load_rules


def register(sub: Any) -> None:
    """Add `check` to the `intake` sub-commands."""
    s = sub.add_parser("check", help="preflight: config, rules, database, raw store, clamd … one line each")
    s.add_argument("--quiet", action="store_true", help="print only the failures")
    s.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    results = run_checks(args.config)
    for result in results:
        if not args.quiet or not result.ok:
            print(result.line())
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} check(s) failed", file=sys.stderr)
    return EXIT_FAILED if failed else 0


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
    """Each clamd of `[scan] clamd`: its version, or its one-line error. Several clamd share the load, so one
    that does not answer is a warning; the check fails only when none answers (mail would be held)."""
    from daemon.scanner import Scanner

    scanner = Scanner(config.scan.clamd, timeout=10)
    states = scanner.probe()
    answering = [s for s in states if s.version is not None]
    if len(states) == 1:
        if not answering:
            yield Result("clamd", False,
                         f"no answer at {config.scan.clamd}: start clamd or fix INTAKE_CLAMD / scan.clamd")
            return
        yield Result("clamd", True, f"{config.scan.clamd} answers ({(answering[0].version or '').split('/')[0]})")
    else:
        for s in states:
            if s.version is not None:
                yield Result("clamd", True, f"[{s.index}] {s.url} answers ({s.version.split('/')[0]})")
            else:
                yield Result("clamd", bool(answering), f"[{s.index}] {s.url}: no answer ({s.error}): start it or "
                             "remove it from INTAKE_CLAMD / scan.clamd", warning=bool(answering))
        if not answering:
            yield Result("clamd", False, f"none of the {len(states)} clamd answers: new mail would be held")
            return
        yield Result("clamd", True, f"{len(answering)} of {len(states)} clamd answer (round-robin)",
                     warning=len(answering) < len(states))
    for version in dict.fromkeys(s.version or "" for s in answering):  # each distinct database once
        yield _signature_age(version, max_age_days)


def _signature_age(version: str, max_age_days: float) -> Result:
    parts = version.split("/")
    if len(parts) < 3:
        return Result("signatures", True, "age unknown (no official database loaded: test signatures?)", warning=True)
    try:
        built = parsedate_to_datetime(parts[2].strip())
        if built.tzinfo is None:
            built = built.replace(tzinfo=dt.UTC)
    except (TypeError, ValueError):
        return Result("signatures", True, f"cannot read the database date from {version!r}", warning=True)
    age = (dt.datetime.now(dt.UTC) - built).total_seconds() / 86400
    if age > max_age_days:
        return Result("signatures", False,
                      f"database {parts[1]} is {age:.1f} days old: run freshclam / check its timer")
    return Result("signatures", True, f"database {parts[1]}, {age:.1f} days old")


def check_imap(config: Config) -> Iterator[Result]:
    """Log in to the mailbox the way the daemon does (daemon/sources/imap: same TLS checks, same client), and
    open the mailbox read-only (EXAMINE): the check never changes anything."""
    from daemon.sources.imap import ImapError, load_imap_config, try_login

    try:
        imap = load_imap_config(config)
    except ConfigError as exc:
        yield Result("imap", False, str(exc))
        return
    if imap is None:
        return  # no mailbox configured (LMTP only)
    try:
        yield Result("imap", True, asyncio.run(try_login(imap)))
    except ImapError as exc:
        yield Result("imap", False, str(exc))


def check_alerts(config: Config) -> Iterator[Result]:
    """The [alerts] table parses and every configured channel is reachable (no alert is sent)."""
    import smtplib
    import ssl
    from urllib.parse import urlparse

    from daemon.alerts.settings import load_alert_settings

    try:
        settings = load_alert_settings(config)
    except ConfigError as exc:
        yield Result("alerts", False, str(exc))
        return
    if settings.mail is not None:
        mail = settings.mail
        try:
            context = ssl.create_default_context(cafile=mail.ca_file)
            connect = (smtplib.SMTP_SSL(mail.host, mail.port, timeout=15, context=context) if mail.tls
                       else smtplib.SMTP(mail.host, mail.port, timeout=15))
            with connect as smtp:
                smtp.ehlo()
                if mail.starttls and not mail.tls:
                    smtp.starttls(context=context)
                    smtp.ehlo()
                if mail.username:
                    smtp.login(mail.username, mail.password or "")
            yield Result("alerts", True, f"mail: {mail.host}:{mail.port} answers" + (" and accepts the login"
                                                                                     if mail.username else ""))
        except (OSError, smtplib.SMTPException) as exc:
            yield Result("alerts", False, f"mail: {mail.host}:{mail.port} failed ({exc.__class__.__name__}): check "
                                          "[alerts.mail] host, port, starttls and the password")
    if settings.webhook is not None:
        host = urlparse(settings.webhook.url).hostname or "?"
        yield Result("alerts", True, f"webhook: {settings.webhook.format} to {host} configured "
                                     "(run 'intake alerts test' to send one)")


def check_web(config: Config) -> Iterator[Result]:
    """`intake web`'s settings, its session key, its accounts and the search index it needs (migration 0008)."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from daemon.store.db import make_engine
    from daemon.web.settings import WebSettings

    try:
        web = WebSettings.from_config(config)
    except ConfigError as exc:
        yield Result("web", False, str(exc))
        return
    secret = web.secret_file
    if secret is not None and secret.exists():
        mode = stat.S_IMODE(secret.stat().st_mode)
        if mode & 0o077:
            yield Result("web", False, f"{secret} is mode {mode:o}: chmod 600 {secret} (it signs the sessions)")
            return
    proxy = f", user header {web.trusted_user_header} from {', '.join(web.trusted_proxies)}" if (
        web.trusted_user_header) else ""
    yield Result("web", True, f"http://{web.listen}:{web.port}, idle timeout {web.idle_minutes} min{proxy}")
    engine = make_engine(config.database_url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                triggers = conn.execute(text("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
                                             " AND name LIKE 'record_search_%'")).scalar_one()
                wanted = 3
            else:
                triggers = conn.execute(text("SELECT count(*) FROM pg_trigger WHERE tgname = 'record_search_refresh'"
                                             " AND NOT tgisinternal")).scalar_one()
                wanted = 1
            users = conn.execute(text("SELECT count(*) FROM users WHERE NOT disabled")).scalar_one()
    except SQLAlchemyError:
        return  # the database line above says what is wrong (unreachable, or not migrated)
    finally:
        engine.dispose()
    if triggers != wanted:
        yield Result("web", False, "the text search triggers on messages are missing (a migration rebuilt the table?):"
                                   " recreate them as migrations/versions/0008_text_search.py does")
    if not users:
        yield Result("web", True, "no web accounts yet: intake users add NAME --role admin", warning=True)
    else:
        yield Result("web", True, f"{users} active web account(s)")


def check_service(config: Config) -> Iterator[Result]:
    """[service] and [metrics] parse (strict: unknown keys and wrong types are one line naming the key)."""
    from daemon.metrics import metrics_settings
    from daemon.service.options import ServiceOptions

    try:
        options = ServiceOptions.from_config(config)
        enabled, address, port = metrics_settings(config.raw)
    except ConfigError as exc:
        yield Result("service", False, str(exc))
        return
    yield Result("service", True, f"stop_timeout {options.stop_timeout:g} s, orphan_grace {options.orphan_grace:g} s")
    if enabled and not _port_free(address, port):
        yield Result("metrics", False, f"{address}:{port} is in use: stop what listens there or change metrics.port")


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _searchable_by(folder: Path, gid: int | None) -> Path | None:
    """The first folder on the way to `folder` that a member of group `gid` (or anyone, when None) cannot
    enter; None when every one can be searched."""
    for part in [folder, *folder.parents]:
        st = part.stat()
        mode = stat.S_IMODE(st.st_mode)
        if mode & stat.S_IXOTH or (gid is not None and st.st_gid == gid and mode & stat.S_IXGRP):
            continue
        return part
    return None


def check_lmtp(config: Config) -> Iterator[Result]:
    """[lmtp]: parses; the socket's folder exists, is writable, and can be entered by the socket's group (the
    MTA's user connects through it); the group exists; the TCP ports are free (a running daemon holds its own:
    run the check before `intake run`, as ExecStartPre= does)."""
    import grp
    import os

    if "lmtp" not in config.raw:
        return
    from daemon.sources.lmtp.config import LmtpConfig

    try:
        lmtp = LmtpConfig.from_config(config.raw)
    except ConfigError as exc:
        yield Result("lmtp", False, str(exc))
        return
    if not lmtp.any_enabled:
        yield Result("lmtp", True, "configured but not enabled (enabled = false)")
        return
    problems: list[str] = []
    gid: int | None = None
    if lmtp.socket_group:
        try:
            gid = grp.getgrnam(lmtp.socket_group).gr_gid
        except KeyError:
            problems.append(f"lmtp.socket_group: group {lmtp.socket_group!r} does not exist (the MTA's group, "
                            "e.g. postfix)")
    if lmtp.enabled and lmtp.socket:
        folder = Path(lmtp.socket).parent
        if not folder.is_dir():
            problems.append(f"lmtp.socket: folder {folder} does not exist: create it (under systemd "
                            "RuntimeDirectory=intake makes /run/intake)")
        elif not os.access(folder, os.W_OK | os.X_OK):
            problems.append(f"lmtp.socket: folder {folder} is not writable by this user")
        else:
            blocked = _searchable_by(folder, gid)
            if blocked is not None:
                who = f"group {lmtp.socket_group}" if lmtp.socket_group else "other users"
                problems.append(f"lmtp.socket: {who} cannot enter {blocked}: the MTA could not reach the socket "
                                f"(chgrp {lmtp.socket_group or 'postfix'} {blocked}; chmod g+x {blocked})")
    for key, host, port, on in (("port", lmtp.host, lmtp.port, lmtp.enabled and bool(lmtp.port)),
                                ("smtp_port", lmtp.smtp_host, lmtp.smtp_port, lmtp.smtp_enabled)):
        if on and not _port_free(host, port):
            problems.append(f"lmtp.{key}: {host}:{port} is in use")
    for problem in problems:
        yield Result("lmtp", False, problem)
    if not problems:
        doors = [f"socket {lmtp.socket}" if lmtp.enabled and lmtp.socket else "",
                 f"tcp {lmtp.host}:{lmtp.port}" if lmtp.enabled and lmtp.port else "",
                 f"smtp {lmtp.smtp_host}:{lmtp.smtp_port}" if lmtp.smtp_enabled else ""]
        yield Result("lmtp", True, ", ".join(d for d in doors if d))


def check_database_modes(config: Config) -> Iterator[Result]:
    """A SQLite database, its -wal and -shm: 0640 or tighter (personal data, R12)."""
    from daemon.store.db import sqlite_path

    path = sqlite_path(config.database_url)
    if path is None:
        return
    bad = []
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists() and stat.S_IMODE(file.stat().st_mode) & 0o007:
            bad.append(f"{file} is {oct(stat.S_IMODE(file.stat().st_mode))}")
    if bad:
        yield Result("db modes", False, f"readable by others: {bad[0]}: run chmod o-rwx {path}*")
    elif path.exists():
        yield Result("db modes", True, f"{path} not readable by others")


def check_orphans(config: Config) -> Iterator[Result]:
    """Raw files no record names, older than [service] orphan_grace: listed; the daemon removes them."""
    from sqlalchemy.exc import SQLAlchemyError

    from daemon.service.options import ServiceOptions
    from daemon.store.db import make_engine, make_sessionmaker
    from daemon.store.orphans import find_orphans
    from daemon.store.raw import RawStore

    if not config.raw_dir.exists() and not config.quarantine_dir.exists():
        return
    try:
        grace = ServiceOptions.from_config(config).orphan_grace
    except ConfigError:
        return  # reported by check_service
    engine = make_engine(config.database_url)
    try:
        found = find_orphans(make_sessionmaker(engine), RawStore(config.raw_dir, config.quarantine_dir), grace)
    except (SQLAlchemyError, OSError):
        return  # reported by check_database
    finally:
        engine.dispose()
    if not found:
        yield Result("orphans", True, f"none (raw files with no record, older than {grace:g} s)")
        return
    listed = ", ".join(str(o.path) for o in found[:5]) + (" …" if len(found) > 5 else "")
    yield Result("orphans", True, f"{len(found)} raw file(s) with no record (a delivery that was never recorded; "
                                  f"the daemon removes them at start and every orphan_sweep_interval): {listed}",
                 warning=True)


# Further checks register here, each yielding Results for a config.
EXTRA_CHECKS: list[Callable[[Config], Iterator[Result]]] = [check_imap, check_alerts]
EXTRA_CHECKS.append(check_web)
EXTRA_CHECKS.extend([check_service, check_lmtp, check_database_modes, check_orphans])  # issue 15


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
