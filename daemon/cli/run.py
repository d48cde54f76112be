"""`intake run` (the daemon) and `intake status` (its health, from another process).

`register(subparsers)` adds both to the `intake` command line (daemon/cli/__init__.py). Errors are one line
on stderr (daemon.cli.main prints them), never a traceback: a bad config or rules file exits 2; a
database, IMAP or listener that cannot be used exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from typing import Any

from daemon.cli.common import CliError, load_context, open_sessions

STALE_AFTER = dt.timedelta(seconds=60)  # a daemon whose health row is older than this is not responding


def register(sub: Any) -> None:
    """Add `run` and `status` to the `intake` sub-commands."""
    s = sub.add_parser("run", help="the daemon: watch the mailbox over IMAP (and LMTP when enabled)")
    s.add_argument("--once", action="store_true",
                   help="process the mailbox until it is drained, then stop (no IDLE, no held-record retries)")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("status", help="the daemon's health: last poll, backlog, today's counts, clamd, last error")
    s.add_argument("--json", action="store_true", help="one JSON object")
    s.set_defaults(func=cmd_status)


# -- run --------------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from daemon.logs import get_logger
    from daemon.metrics import metrics_settings
    from daemon.pipeline import Intake
    from daemon.service import Service, ServiceError, ServiceOptions, worker_threads
    from daemon.sources.imap import load_imap_config
    from daemon.sources.lmtp.config import LmtpConfig
    from daemon.store.db import prepare_sqlite_file
    from daemon.store.raw import RawStoreError

    config, rules = load_context(args)
    assert rules is not None
    # Every table is read before anything starts: a wrong key or type is one line (exit 2), never a
    # misleading "nothing to run" later (issue 15).
    imap = load_imap_config(config)
    options = ServiceOptions.from_config(config, once=args.once)
    lmtp = LmtpConfig.from_config(config.raw)
    metrics_settings(config.raw)
    if imap is None and not lmtp.any_enabled:
        raise CliError("nothing to run: configure [imap], or [lmtp] with enabled = true (README, "
                       "\"Direct delivery over LMTP\")")
    prepare_sqlite_file(config.database_url, config.staff_group)  # 0640, group = staff_group (R12)
    sessions = open_sessions(config, pool_size=worker_threads(imap))
    intake = Intake.from_config(config, rules)
    intake.sessions = sessions
    try:
        intake.raw_store.init()
    except (OSError, RawStoreError) as exc:
        raise CliError(f"raw store {config.raw_dir}: cannot be used ({exc.__class__.__name__})") from None
    service = Service(config, intake, options, imap)
    try:
        code = asyncio.run(service.run())
    except ServiceError as exc:
        raise CliError(str(exc)) from None
    if service.abandoned:
        # Worker threads still run a pipeline step; nothing they do is acknowledged before it is
        # durable, so leaving now is safe. Python would otherwise wait for them at exit.
        get_logger("service").warning("exit_abandoning_threads")
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(code)
    return code


# -- status -----------------------------------------------------------------------------------------
def _ago(when: dt.datetime | None, now: dt.datetime) -> str:
    if when is None:
        return "never"
    seconds = int((now - when).total_seconds())
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def gather_status(config: Any, sessions: Any, now: dt.datetime | None = None) -> dict[str, Any]:
    from sqlalchemy import func, select

    from daemon.jst import JST
    from daemon.scanner import Scanner
    from daemon.service import signature_age
    from daemon.store.db import Message, ServiceHealth

    now = now or dt.datetime.now(dt.UTC)
    today = now.astimezone(JST).replace(hour=0, minute=0, second=0, microsecond=0)
    with sessions() as session:
        rows = list(session.scalars(select(ServiceHealth).order_by(ServiceHealth.updated_at.desc())))
        counts = dict(session.execute(
            select(Message.status, func.count()).where(Message.created_at >= today).group_by(Message.status)).all())
        held = session.scalar(select(func.count()).select_from(Message).where(Message.status == "held")) or 0
    daemons = []
    for row in rows:
        running = row.state not in ("stopped", "dead") and now - row.updated_at <= STALE_AFTER
        if not running and daemons:
            continue  # older, stopped rows: only the newest is shown when nothing runs
        state = row.state if running else ("not responding" if row.state not in ("stopped", "dead") else row.state)
        daemons.append({
            "owner": row.owner, "pid": row.pid, "running": running, "state": state,
            "status": row.status_line, "mailbox": row.mailbox, "updated_at": row.updated_at.isoformat(),
            "last_poll_at": row.last_poll_at.isoformat() if row.last_poll_at else None,
            "backlog": row.backlog, "in_flight": row.in_flight,
            "last_error": row.last_error,
            "last_error_at": row.last_error_at.isoformat() if row.last_error_at else None,
        })
        if not running:
            break
    states = Scanner(config.scan.clamd, timeout=5).probe()
    up = [st for st in states if st.up]
    reachable = bool(up)  # the others take the load of one that is down
    version = next((st.version for st in up if st.version), None)
    age = signature_age(version, now)
    last_poll = max((d["last_poll_at"] for d in daemons if d["last_poll_at"]), default=None)
    errors = [d for d in daemons if d["last_error_at"]]
    last_error = max(errors, key=lambda d: d["last_error_at"]) if errors else None
    return {
        "daemons": daemons,
        "running": any(d["running"] for d in daemons),
        "last_poll_at": last_poll,
        "backlog": {"new": sum(d["backlog"] or 0 for d in daemons if d["running"]), "held": held},
        "today": {s: counts.get(s, 0) for s in ("accepted", "rejected", "quarantined", "held", "duplicate")},
        "clamd": {"reachable": reachable, "version": version,
                  "signature_age_hours": round(age.total_seconds() / 3600, 1) if age is not None else None,
                  "count": len(states), "down": [st.url for st in states if not st.up]},
        "last_error": ({"text": last_error["last_error"], "at": last_error["last_error_at"]}
                       if last_error else None),
    }


def render_status(status: dict[str, Any], now: dt.datetime) -> str:
    from daemon.jst import JST

    def jst(iso: str | None) -> str:
        if not iso:
            return "never"
        when = dt.datetime.fromisoformat(iso)
        return f"{when.astimezone(JST).strftime('%Y-%m-%d %H:%M:%S JST')} ({_ago(when, now)})"

    out = []
    if not status["daemons"]:
        out.append("daemon     never ran against this database")
    for d in status["daemons"]:
        line = f"daemon     {d['state']}: {d['status'] or '-'}  (pid {d['pid']}, updated {jst(d['updated_at'])})"
        out.append(line)
    if any(d["mailbox"] for d in status["daemons"]) or not status["daemons"]:
        out.append(f"last poll  {jst(status['last_poll_at'])}")
        out.append(f"backlog    {status['backlog']['new']} new in the mailbox at the last poll, "
                   f"{status['backlog']['held']} held (retried from the raw store)")
    else:  # LMTP/SMTP only: no mailbox, no polls; the MTA queues what is not yet recorded
        out.append("sources    LMTP/SMTP only: the MTA delivers; mail not yet recorded waits in its queue")
        out.append(f"backlog    {status['backlog']['held']} held (retried from the raw store)")
    today = status["today"]
    out.append("today      " + ", ".join(f"{k} {v}" for k, v in today.items()) + "  (recorded today, JST)")
    clamd = status["clamd"]
    if clamd["reachable"]:
        age = clamd["signature_age_hours"]
        age_text = f"signatures {age / 24:.1f} days old" if age is not None else "signature date unknown"
        out.append(f"clamd      reachable ({clamd['version'] or '?'}), {age_text}")
        if clamd.get("down"):
            out.append(f"           {len(clamd['down'])} of {clamd['count']} clamd NOT answering: "
                       + ", ".join(clamd["down"]))
    else:
        out.append("clamd      NOT reachable: new mail is held until it answers")
    err = status["last_error"]
    out.append(f"last error {err['text']} at {jst(err['at'])}" if err else "last error none")
    return "\n".join(out)


def cmd_status(args: argparse.Namespace) -> int:
    config, _ = load_context(args, need_rules=False)
    sessions = open_sessions(config)
    now = dt.datetime.now(dt.UTC)
    status = gather_status(config, sessions, now)
    if args.json:
        print(json.dumps(status, ensure_ascii=False))
    else:
        print(render_status(status, now))
    # 0: a daemon runs and clamd answers; 1: something needs a look (for monitoring scripts).
    return 0 if status["running"] and status["clamd"]["reachable"] else 1
