"""`intake alerts test` and `intake alerts list`: try the alert channels, read the alert outbox."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import uuid
from typing import Any

from daemon.alerts import events
from daemon.cli.common import EXIT_FAILED, load_context, open_sessions, render_table


def register(subparsers: Any) -> None:
    """Add `alerts` with its `test` and `list` to the `intake` sub-commands."""
    s = subparsers.add_parser("alerts", help="staff alerts: test the channels, show the outbox")
    sub = s.add_subparsers(dest="alerts_command", required=True)
    t = sub.add_parser("test", help="send a test alert through every configured channel and report each result")
    t.set_defaults(func=cmd_test)
    ls = sub.add_parser("list", help="the alert outbox, newest first, with each channel's state")
    ls.add_argument("--state", choices=["pending", "sent"], help="only alerts with a pending delivery / all sent")
    ls.add_argument("--category", choices=list(events.CATEGORIES))
    ls.add_argument("--limit", type=int, default=50, help="at most this many alerts (default 50; 0: all)")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=cmd_list)


def cmd_test(args: argparse.Namespace) -> int:
    """Send one test alert through every configured channel, directly (not through the outbox)."""
    from daemon.alerts.channels import ChannelError, build_channels
    from daemon.alerts.settings import load_alert_settings
    from daemon.config import load_config

    settings = load_alert_settings(load_config(args.config))
    channels = build_channels(settings)
    now = dt.datetime.now(dt.UTC)
    rendered = events.render_test(f"intake-test-{uuid.uuid4().hex[:12]}", now)

    async def send_all() -> list[tuple[str, str | None]]:
        results = []
        for name, channel in channels.items():
            try:
                await channel.send(rendered)
                results.append((name, None))
            except ChannelError as exc:
                results.append((name, str(exc)))
            except Exception as exc:
                results.append((name, f"{name}:{exc.__class__.__name__}"))
        return results

    results = asyncio.run(send_all())
    for name, error in results:
        target = _describe(settings, name)
        print(f"{name}: " + ("ok" if error is None else f"FAILED ({error})") + (f"  {target}" if target else ""))
    if set(channels) == {"log"}:
        print("only the log is configured: add [alerts.mail] and/or [alerts.webhook] to the config file")
    print(f"test alert id: {rendered.id}")
    return EXIT_FAILED if any(error for _, error in results) else 0


def _describe(settings: Any, name: str) -> str:
    if name == "mail" and settings.mail is not None:
        m = settings.mail
        tls = "TLS" if m.tls else ("STARTTLS" if m.starttls else "plain")
        return f"{m.host}:{m.port} {tls}{' AUTH' if m.username else ''} → {len(m.to)} address(es)"
    if name == "webhook" and settings.webhook is not None:
        return f"format {settings.webhook.format}"
    return ""


def cmd_list(args: argparse.Namespace) -> int:
    from daemon.alerts.outbox import list_outbox

    config, _ = load_context(args, need_rules=False)
    sessions = open_sessions(config)
    with sessions() as session:
        rows = list_outbox(session, state=args.state, category=args.category, limit=args.limit)
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return 0
    table = []
    for row in rows:
        states = []
        for d in row["deliveries"]:
            text = f"{d['channel']}:{d['state']}"
            if d["state"] == "pending" and d["attempts"]:
                nxt = events.jst_text(d["next_attempt_at"])[11:19] if d["next_attempt_at"] else "-"
                text += f"({d['attempts']} tries, next {nxt}, {d['last_error'] or '-'})"
            states.append(text)
        table.append([
            str(row["id"]), events.jst_text(row["created_at"]), row["category"], row["kind"],
            f"#{row['record']}" if row["record"] is not None else "-",
            " ".join(states) if row["routed"] else "not yet routed",
        ])
    print(render_table(table, ["ID", "CREATED (JST)", "CATEGORY", "KIND", "RECORD", "DELIVERIES"]))
    print(f"{len(table)} alert(s)")
    return 0
