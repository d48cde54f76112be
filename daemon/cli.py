"""`intake`: the command line. Every failure is one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from daemon import jst, logs
from daemon.config import Config, ConfigError, load_config
from daemon.jst import JST
from daemon.rules import Rules, RulesError, load_rules
from daemon.store.db import Message, make_engine, make_sessionmaker

EXIT_USAGE = 2
EXIT_FAILED = 1


class CliError(Exception):
    """A one-line error for the user."""


def _err(text: str) -> None:
    print(f"intake: error: {text}", file=sys.stderr)


def parse_time(value: str) -> dt.datetime:
    """ISO 8601; a time without an offset is taken as JST (the consultation's zone)."""
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 time, e.g. 2026-01-10T09:15:00+09:00") from None
    return when.replace(tzinfo=JST) if when.tzinfo is None else when


def _context(args: argparse.Namespace, need_rules: bool = True) -> tuple[Config, Rules | None]:
    config = load_config(args.config)
    rules = load_rules(config.rules_path) if need_rules else None
    return config, rules


def _sessions(config: Config, check_schema: bool = True) -> Any:
    from daemon.store import migrate

    engine = make_engine(config.database_url)
    if check_schema:
        try:
            current = migrate.current_revision(engine)
        except SQLAlchemyError as exc:
            raise CliError(
                f"database unreachable ({exc.__class__.__name__}): check INTAKE_DATABASE_URL / intake.database_url"
            ) from None
        head = migrate.head_revision(config.database_url)
        if current != head:
            raise CliError(f"database schema is at {current or 'nothing'}, not {head}: run 'intake db upgrade'")
    return make_sessionmaker(engine)


# -- ingest -----------------------------------------------------------------------------------------
def cmd_ingest(args: argparse.Namespace) -> int:
    from daemon.model import Arrival
    from daemon.pipeline import Intake, StorageError
    from daemon.store import records

    config, rules = _context(args)
    assert rules is not None
    sessions = _sessions(config)
    intake = Intake.from_config(config, rules)
    intake.sessions = sessions
    intake.raw_store.init()
    failures = 0
    for name in args.files:
        try:
            raw = Path(name).read_bytes()
        except OSError as exc:
            _err(f"{name}: cannot read ({exc.strerror or exc.__class__.__name__})")
            failures += 1
            continue
        arrival = Arrival(raw=raw, source="ingest", received_at=args.received_at,
                          received_source="argument" if args.received_at else None)
        try:
            rid = intake.process(arrival).id
        except StorageError as exc:
            _err(f"{name}: not recorded: {exc}")
            failures += 1
            continue
        with sessions() as session:
            msg = records.load(session, rid)
            assert msg is not None
            if args.json:
                print(json.dumps(records.to_contract(msg), ensure_ascii=False), flush=True)
            else:
                print(f"{name}: #{msg.id} {msg.status}" + (f" ({', '.join(msg.reasons)})" if msg.reasons else ""))
    return EXIT_FAILED if failures else 0


# -- log / show -------------------------------------------------------------------------------------
def _jst(value: dt.datetime | None) -> str:
    return jst.stamp(value, suffix=True)


def _table(rows: list[list[str]], headers: list[str]) -> str:
    def width(s: str) -> int:  # East Asian wide characters take two columns in a terminal
        import unicodedata

        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)

    widths = [max([width(h)] + [width(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = []
    for row in [headers, *rows]:
        lines.append("  ".join(c + " " * (widths[i] - width(c)) for i, c in enumerate(row)).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_log(args: argparse.Namespace) -> int:
    """The intake log, grown into the staff's search (daemon/staff_cli.py)."""
    from daemon.staff_cli import cmd_log as staff_log

    return staff_log(args)


def cmd_show(args: argparse.Namespace) -> int:
    from daemon.store import records
    from daemon.store.raw import RawStore, RawStoreError

    config, _ = _context(args, need_rules=False)
    sessions = _sessions(config)
    with sessions() as session:
        msg = records.load(session, args.id)
        if msg is None:
            raise CliError(f"no record {args.id}")
        if args.raw:
            if msg.sha256 is None:
                raise CliError(
                    f"record {args.id} has no stored raw message (too large: its evidence is the server folder)"
                )
            try:
                data = RawStore(config.raw_dir, config.quarantine_dir).get(msg.sha256)
            except RawStoreError as exc:
                raise CliError(str(exc)) from None
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return 0
        record = records.to_contract(msg)
        if args.json:
            print(json.dumps(record, ensure_ascii=False, indent=2))
            return 0
        print(render_record(msg, record))
    return 0


def render_record(msg: Message, record: dict[str, Any]) -> str:
    out = [
        f"受付番号 #{msg.id}   {msg.status.upper()}"
        + (f" (duplicate of #{msg.duplicate_of})" if msg.duplicate_of else ""),
        f"  受付日時   {_jst(msg.received_at)}  (from {msg.received_source})",
        f"  source     {msg.source}" + (f"  {msg.imap_mailbox} uid {msg.imap_uid}" if msg.imap_uid else ""),
        f"  size       {msg.size:,} bytes",
        f"  sha256     {msg.sha256 or '-'}",
        f"  reasons    {', '.join(msg.reasons or []) or '-'}",
        f"  flags      {', '.join(msg.flags or []) or '-'}",
        f"  virus      {msg.virus or '-'}",
        f"  from       {msg.from_address or '-'}",
        f"  subject    {msg.subject or '-'}",
        f"  message-id {msg.message_id or '-'}",
    ]
    if msg.last_error:
        out.append(f"  last error {msg.last_error} (attempts: {msg.attempts})")
    out.append(f"  attachments ({len(msg.attachments)}):")
    for a in msg.attachments:
        sig = f"  [{a.signature}]" if a.signature else ""
        out.append(f"    {a.position}. {a.filename or '(no name)'}  {a.size:,} bytes  {a.kind}/{a.format}  "
                   f"{a.mime}  → {a.verdict}{sig}")
    submitter = record.get("submitter") or {}
    if submitter:
        out.append("  提出者:")
        for key, value in submitter.items():
            if value not in (None, "", False):
                out.append(f"    {key}: {value}")
    comments = record.get("comments") or []
    out.append(f"  意見 ({len(comments)}):")
    for i, c in enumerate(comments, 1):
        out.append(f"    [{i}] targets={','.join(c.get('targets') or []) or '-'} "
                   f"pages={','.join(c.get('pages') or []) or '-'} chars={c.get('chars')}")
        for line in (c.get("text") or "").splitlines():
            out.append(f"        {line}")
        if c.get("summary"):
            out.append(f"        要旨: {c['summary']}")
    texts = record.get("texts") or []
    if texts:
        out.append("  texts:")
        for t in texts:
            out.append(f"    {t.get('source')}: {t.get('decoder')} chars={t.get('chars')} replaced={t.get('replaced')}"
                       + (f" error={t['error']}" if t.get("error") else ""))
    out.append("  events:")
    for e in msg.events:
        out.append(f"    {_jst(e.at)}  {e.action:<10} → {e.status}  {', '.join(e.reasons or [])}"
                   + (f"  by {e.actor}" if e.actor != "intake" else "") + (f"  ({e.note})" if e.note else ""))
    return "\n".join(out)


# -- db ---------------------------------------------------------------------------------------------
def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from daemon.store import migrate

    config, _ = _context(args, need_rules=False)
    if config.database_url.startswith("sqlite:///"):
        Path(config.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    try:
        migrate.upgrade(config.database_url)
    except SQLAlchemyError as exc:
        raise CliError(f"database unreachable ({exc.__class__.__name__}): check INTAKE_DATABASE_URL") from None
    print(f"database at revision {migrate.head_revision(config.database_url)}")
    return 0


# -- check ----------------------------------------------------------------------------------------
def cmd_check(args: argparse.Namespace) -> int:
    from daemon.check import run_checks

    results = run_checks(args.config)
    for result in results:
        if not args.quiet or not result.ok:
            print(result.line())
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} check(s) failed", file=sys.stderr)
    return EXIT_FAILED if failed else 0


# -- parser -----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from daemon import staff_cli

    p = argparse.ArgumentParser(prog="intake", description="Mail intake for public comments (パブリックコメント).")
    p.add_argument("--config", help="config file (default: $INTAKE_CONFIG or /etc/intake/intake.toml)")
    p.add_argument("--log-level", default="INFO", help="log level for the JSON logs on stderr (default INFO)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("ingest", help="run the full pipeline on .eml files")
    s.add_argument("--received-at", type=parse_time, help="arrival time (ISO 8601; JST if no offset)")
    s.add_argument("--json", action="store_true", help="print one JSON record per message, one per line")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("log", help="the intake log, newest first")
    s.add_argument("--status", choices=["accepted", "rejected", "quarantined", "held", "duplicate"])
    s.add_argument("--reason", help="only records with this reason code")
    s.add_argument("--since", type=parse_time, help="received at or after (ISO 8601; JST if no offset)")
    s.add_argument("--until", type=parse_time, help="received at or before (ISO 8601; JST if no offset)")
    s.add_argument("--limit", type=int, default=0, help="at most this many records")
    s.add_argument("--json", action="store_true", help="one JSON record per line (same as --format json)")
    staff_cli.add_log_options(s)
    s.set_defaults(func=cmd_log)

    s = sub.add_parser("show", help="one record in full")
    s.add_argument("id", type=int)
    s.add_argument("--json", action="store_true")
    s.add_argument("--raw", action="store_true", help="write the original bytes to stdout")
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("check", help="preflight: config, rules, database, raw store, clamd … one line each")
    s.add_argument("--quiet", action="store_true", help="print only the failures")
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("db", help="database maintenance")
    dbsub = s.add_subparsers(dest="db_command", required=True)
    u = dbsub.add_parser("upgrade", help="create or migrate the schema to the newest revision")
    u.set_defaults(func=cmd_db_upgrade)

    staff_cli.add_parsers(sub)  # stats, export, release, reject, retry, rescan, purge
    from daemon import run_cli

    run_cli.add_parsers(sub)  # run (the daemon), status
    from daemon import alerts_cli

    alerts_cli.add_parsers(sub)  # alerts test, alerts list
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    try:
        return int(args.func(args))
    except (ConfigError, RulesError, CliError) as exc:
        _err(str(exc))
        return EXIT_USAGE if not isinstance(exc, CliError) else EXIT_FAILED
    except SQLAlchemyError as exc:
        _err(f"database error ({exc.__class__.__name__}): check INTAKE_DATABASE_URL and 'intake db upgrade'")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: other modules import daemon.cli and
    # raise its CliError, which this copy's `except CliError` would not recognise.
    from daemon.cli import main as _main

    sys.exit(_main())
