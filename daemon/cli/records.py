"""The record commands: `intake ingest` (the full pipeline on .eml files), `intake log` (the intake log,
grown into the staff's search) and `intake show` (one record in full, or its raw bytes)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from daemon.cli.common import (
    EXIT_FAILED,
    KINDS,
    CliError,
    filters_from_args,
    jst_stamp,
    load_context,
    open_sessions,
    parse_time,
    print_error,
    render_table,
)
from daemon.staff.csv_cells import SafeWriter
from daemon.staff.query import TARGET_KEYS, Filters
from daemon.store.db import Message

STATUSES = ("accepted", "rejected", "quarantined", "held", "duplicate")
LOG_CSV = ["id", "received_at", "status", "size", "reasons", "flags", "duplicate_of", "duplicate_text_of",
           "submitter_kind", "items", "targets"]


def register(sub: Any) -> None:
    """Add `ingest`, `log` and `show` to the `intake` sub-commands."""
    s = sub.add_parser("ingest", help="run the full pipeline on .eml files")
    s.add_argument("--received-at", type=parse_time, help="arrival time (ISO 8601; JST if no offset)")
    s.add_argument("--json", action="store_true", help="print one JSON record per message, one per line")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("log", help="the intake log, newest first")
    s.add_argument("--status", choices=list(STATUSES))
    s.add_argument("--reason", help="only records with this reason code")
    s.add_argument("--since", type=parse_time, help="received at or after (ISO 8601; JST if no offset)")
    s.add_argument("--until", type=parse_time, help="received at or before (ISO 8601; JST if no offset)")
    s.add_argument("--limit", type=int, default=0, help="at most this many records")
    s.add_argument("--json", action="store_true", help="one JSON record per line (same as --format json)")
    add_log_options(s)
    s.set_defaults(func=cmd_log)

    s = sub.add_parser("show", help="one record in full")
    s.add_argument("id", type=int)
    s.add_argument("--json", action="store_true")
    s.add_argument("--raw", action="store_true", help="write the original bytes to stdout")
    s.set_defaults(func=cmd_show)


def add_log_options(s: argparse.ArgumentParser) -> None:
    """The search options `intake log` gains (its own --status --reason --since --until --limit --json stay)."""
    s.add_argument("--flag", help="only records with this flag (late, duplicate_text, target_missing …)")
    s.add_argument("--target", choices=TARGET_KEYS, help="only records with a comment item on this draft")
    s.add_argument("--kind", choices=KINDS, help="only records whose submitter is of this kind")
    s.add_argument("--text", help="only records with this text in a comment item (NFKC, case and spaces ignored)")
    s.add_argument("--format", choices=["table", "json", "csv"], default="table", help="output (default table)")


# -- ingest -----------------------------------------------------------------------------------------
def cmd_ingest(args: argparse.Namespace) -> int:
    from daemon.model import Arrival
    from daemon.pipeline import Intake, StorageError
    from daemon.store import records as store_records

    config, rules = load_context(args)
    assert rules is not None
    sessions = open_sessions(config)
    intake = Intake.from_config(config, rules)
    intake.sessions = sessions
    intake.raw_store.init()
    failures = 0
    for name in args.files:
        try:
            raw = Path(name).read_bytes()
        except OSError as exc:
            print_error(f"{name}: cannot read ({exc.strerror or exc.__class__.__name__})")
            failures += 1
            continue
        arrival = Arrival(raw=raw, source="ingest", received_at=args.received_at,
                          received_source="argument" if args.received_at else None)
        try:
            rid = intake.process(arrival).id
        except StorageError as exc:
            print_error(f"{name}: not recorded: {exc}")
            failures += 1
            continue
        with sessions() as session:
            msg = store_records.load(session, rid)
            assert msg is not None
            if args.json:
                print(json.dumps(store_records.to_contract(msg), ensure_ascii=False), flush=True)
            else:
                print(f"{name}: #{msg.id} {msg.status}" + (f" ({', '.join(msg.reasons)})" if msg.reasons else ""))
    return EXIT_FAILED if failures else 0


# -- log --------------------------------------------------------------------------------------------
def cmd_log(args: argparse.Namespace) -> int:
    """The intake log, grown into the staff's search: a table, JSON records or CSV, newest first."""
    from daemon.staff.query import select_records
    from daemon.store import records as store_records

    config, _ = load_context(args, need_rules=False)
    sessions = open_sessions(config)
    fmt = "json" if args.json else args.format
    f = filters_from_args(args, Filters(statuses=[args.status] if args.status else []))
    with sessions() as session:
        found = select_records(session, f, newest_first=True)
        if args.limit:
            found = found[: args.limit]
        if fmt == "json":
            for msg in found:
                full = store_records.load(session, msg.id)
                print(json.dumps(store_records.to_contract(full), ensure_ascii=False))
            return 0
        if fmt == "csv":
            w = SafeWriter(sys.stdout, lineterminator="\n")  # no cell is ever a formula
            w.writerow(LOG_CSV)
            for m in found:
                result = m.result or {}
                items = result.get("comments") or []
                targets = sorted({t for c in items for t in c.get("targets") or []})
                w.writerow([m.id, store_records.jst(m.received_at), m.status, m.size, ",".join(m.reasons or []),
                            ",".join(m.flags or []), m.duplicate_of or "", m.duplicate_text_of or "",
                            (result.get("submitter") or {}).get("kind", ""), len(items), ",".join(targets)])
            return 0
        rows = [
            [str(m.id), jst_stamp(m.received_at), m.status, f"{m.size:,}", ",".join(m.reasons or []) or "-",
             ",".join(m.flags or []) or "-", str(m.duplicate_of or "")]
            for m in found
        ]
    print(render_table(rows, ["ID", "RECEIVED (JST)", "STATUS", "BYTES", "REASONS", "FLAGS", "DUP OF"]))
    print(f"{len(rows)} record(s)")
    return 0


# -- show -------------------------------------------------------------------------------------------
def cmd_show(args: argparse.Namespace) -> int:
    from daemon.store import records as store_records
    from daemon.store.raw import RawStore, RawStoreError

    config, _ = load_context(args, need_rules=False)
    sessions = open_sessions(config)
    with sessions() as session:
        msg = store_records.load(session, args.id)
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
        record = store_records.to_contract(msg)
        if args.json:
            print(json.dumps(record, ensure_ascii=False, indent=2))
            return 0
        print(render_record(msg, record))
    return 0


def render_record(msg: Message, record: dict[str, Any]) -> str:
    out = [
        f"受付番号 #{msg.id}   {msg.status.upper()}"
        + (f" (duplicate of #{msg.duplicate_of})" if msg.duplicate_of else ""),
        f"  受付日時   {jst_stamp(msg.received_at)}  (from {msg.received_source})",
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
    from daemon.staff.explain import lines as explain_lines

    out.extend(f"  説明       {line}" for line in explain_lines(list(msg.reasons or []), list(msg.flags or [])))
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
        out.append(f"    {jst_stamp(e.at)}  {e.action:<10} → {e.status}  {', '.join(e.reasons or [])}"
                   + (f"  by {e.actor}" if e.actor != "intake" else "") + (f"  ({e.note})" if e.note else ""))
    return "\n".join(out)
