"""The staff's commands: `intake stats`, `export`, `release`, `reject`, `retry`, `rescan`, `purge`.

`register(subparsers)` adds them to `intake` (daemon/cli/__init__.py); `intake log`, the staff's search, is in
records.py. Every failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.cli.common import (
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
from daemon.staff.query import TARGET_KEYS, Filters


def _guard(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A decision that cannot be taken (DecisionError: no such record, a status it does not apply to, an empty
    --by or --note) is one line on stderr and exit 1, like a CliError (which daemon.cli.main prints)."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        from daemon.staff.decisions import DecisionError

        try:
            return func(args)
        except DecisionError as exc:
            print_error(str(exc))
            return 1

    return run


def _setup(args: argparse.Namespace, need_rules: bool = True) -> tuple[Any, Any, Any]:
    config, rules = load_context(args, need_rules=need_rules)
    return config, rules, open_sessions(config)


def _intake(args: argparse.Namespace) -> Any:
    from daemon.pipeline import Intake

    config, rules, sessions = _setup(args)
    intake = Intake.from_config(config, rules)
    intake.sessions = sessions
    intake.raw_store.init()
    return intake


def _similarity(args: argparse.Namespace, config: Any) -> tuple[float, int]:
    from daemon.config import ConfigError
    from daemon.staff.groups import DEFAULT_NGRAM, DEFAULT_SIMILARITY

    staff = config.raw.get("staff", {})
    if not isinstance(staff, dict):
        raise ConfigError("[staff]: must be a table")
    sim = args.similarity if getattr(args, "similarity", None) is not None else staff.get(
        "form_letter_similarity", DEFAULT_SIMILARITY)
    ngram = staff.get("form_letter_ngram", DEFAULT_NGRAM)
    if isinstance(sim, bool) or not isinstance(sim, int | float) or not 0 < sim <= 1:
        raise ConfigError("staff.form_letter_similarity: must be a number above 0 and at most 1")
    if isinstance(ngram, bool) or not isinstance(ngram, int) or not 1 <= ngram <= 10:
        raise ConfigError("staff.form_letter_ngram: must be a whole number from 1 to 10")
    return float(sim), ngram


# -- stats -----------------------------------------------------------------------------------------
@_guard
def cmd_stats(args: argparse.Namespace) -> int:
    from daemon.staff.stats import STATUSES as ST
    from daemon.staff.stats import compute, excerpt

    config, rules, sessions = _setup(args)
    sim, ngram = _similarity(args, config)
    corpus = Filters.for_publication(include_late=args.include_late, include_held=args.include_held)
    with sessions() as session:
        st = compute(session, rules, corpus, sim, ngram)
    if args.json:
        print(json.dumps(st.to_json(), ensure_ascii=False, indent=2))
        return 0
    out = [st.tally.line(), ""]
    out.append("by status:  " + "  ".join(f"{k} {v}" for k, v in st.by_status.items()))
    out.append("by reason:  " + ("  ".join(f"{k} {v}" for k, v in st.by_reason.items()) or "-"))
    out.append("by flag:    " + ("  ".join(f"{k} {v}" for k, v in st.by_flag.items()) or "-"))
    out.append("")
    heads = ["DAY (JST)", "TOTAL", *[s.upper() for s in ST]]
    out.append(render_table([[d, str(c.total()), *[str(c[s]) for s in ST]] for d, c in st.per_day], heads))
    last = next((d for d, _ in reversed(st.per_day) if d not in ("before", "after")), "")
    out.append("")
    out.append(f"last day {last}, by hour:")
    out.append(render_table([[h, str(c.total()), *[str(c[s]) for s in ST]] for h, c in st.last_day_hours],
                          ["HOUR", "TOTAL", *[s.upper() for s in ST]]))
    out.append("")
    out.append(f"form-letter groups (identical, or similar at {st.threshold:.2f} or above): {len(st.groups)}")
    if st.groups:
        rows = []
        for g in st.groups:
            ids = sorted({st.items[m].record_id for m in g.members})
            rows.append([g.id, str(g.count), "identical" if g.identical else "similar",
                         ",".join(map(str, ids)), excerpt(st.items[g.members[0]].text, 30)])
        out.append(render_table(rows, ["GROUP", "COUNT", "KIND", "RECORDS", "TEXT"]))
    print("\n".join(out))
    return 0


# -- export ----------------------------------------------------------------------------------------
_TABLE_ONLY = ("since", "until", "flag", "target", "kind", "text", "include_late", "include_held")


def _export_result(args: argparse.Namespace) -> int:
    """`--format result-docx|result-xlsx`: 「提出された意見及び考え方」 from the staff's review (整理).
    Always the public form (R11); the rows are what staff arranged, so the table filters do not apply."""
    from daemon.staff import result_docs
    from daemon.staff.results import build

    given = [f"--{k.replace('_', '-')}" for k in _TABLE_ONLY if getattr(args, k, None) not in (None, False)]
    if given:
        raise CliError(f"{', '.join(given)}: not for the result document (it holds what staff arranged "
                       "in 整理); leave them out")
    if args.output in (None, "-") and sys.stdout.isatty():
        raise CliError(f"a {args.format} export needs --output FILE (or redirect stdout to a file)")
    config, rules, sessions = _setup(args)
    sim, ngram = _similarity(args, config)  # how new items are grouped when the review is brought up to date
    with sessions() as session:
        doc = build(session, rules, threshold=sim, ngram=ngram)
    write = result_docs.write_docx if args.format == "result-docx" else result_docs.write_xlsx
    if args.output in (None, "-"):
        import io

        buf = io.BytesIO()
        write(buf, doc)
        sys.stdout.buffer.write(buf.getvalue())
        sys.stdout.buffer.flush()
    else:
        write(args.output, doc)
        print(f"{doc.counts_line.split('（意見')[0]}, {sum(len(s.rows) for s in doc.sections)} row(s) in "
              f"{len(doc.sections)} section(s) written to {args.output}", file=sys.stderr)
    return 0


@_guard
def cmd_export(args: argparse.Namespace) -> int:
    from daemon.staff import export as ex
    from daemon.staff.query import items_of, select_records
    from daemon.staff.stats import compute

    if args.format.startswith("result-"):
        return _export_result(args)
    config, rules, sessions = _setup(args)
    sim, ngram = _similarity(args, config)
    f = filters_from_args(args, Filters.for_publication(include_late=args.include_late, include_held=args.include_held))
    if args.format == "xlsx" and (args.output in (None, "-")) and sys.stdout.isatty():
        raise CliError("an xlsx export needs --output FILE (or redirect stdout to a file)")
    with sessions() as session:
        st = compute(session, rules, f.corpus(), sim, ngram)
        wanted = {it.key for it in items_of(select_records(session, f), f)}
    items = [it for it in st.items if it.key in wanted]
    table = ex.rows(items, ex.ExportOptions(public=args.public, target_labels=dict(rules.target_labels)))
    progress = ex.Progress(len(table), f"export {args.format}")
    if args.format == "xlsx":
        target: Any = sys.stdout.buffer if args.output in (None, "-") else args.output
        if target is sys.stdout.buffer:
            import io

            buf = io.BytesIO()
            ex.write_xlsx(buf, table, st, args.public, progress.update)
            target.write(buf.getvalue())
            target.flush()
        else:
            ex.write_xlsx(target, table, st, args.public, progress.update)
    else:
        data = ex.csv_bytes(table, args.encoding, public=args.public)
        progress.update(len(table))
        if args.output in (None, "-"):
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            Path(args.output).write_bytes(data)
    if args.output not in (None, "-"):
        print(f"{len(table)} comment item(s) written to {args.output}", file=sys.stderr)
    return 0


# -- decisions -------------------------------------------------------------------------------------
def _print_outcome(o: Any, action: str) -> None:
    line = f"#{o.record_id}: {o.before} → {o.after} ({action})"
    if o.detail:
        line += f": {o.detail}"
    print(line)


@_guard
def cmd_release(args: argparse.Namespace) -> int:
    from daemon.staff.decisions import release

    _print_outcome(release(_intake(args), args.id, args.by, args.note), "release")
    return 0


@_guard
def cmd_reject(args: argparse.Namespace) -> int:
    from daemon.staff.decisions import reject

    _print_outcome(reject(_intake(args), args.id, args.by, args.note), "reject")
    return 0


@_guard
def cmd_retry(args: argparse.Namespace) -> int:
    from daemon.pipeline import StorageError
    from daemon.staff.decisions import DecisionError, held_ids, retry

    if (args.id is None) == (not args.held):
        raise DecisionError("give a record ID or --held (not both)")
    intake = _intake(args)
    ids = held_ids(intake) if args.held else [args.id]
    failed = 0
    for rid in ids:
        try:
            _print_outcome(retry(intake, rid, args.by, args.note), "retry")
        except StorageError as exc:
            print_error(f"#{rid}: not retried: {exc}")
            failed += 1
    if args.held:
        print(f"{len(ids)} held record(s) retried" + (f", {failed} failed" if failed else ""))
    return 1 if failed else 0


@_guard
def cmd_rescan(args: argparse.Namespace) -> int:
    from daemon.staff.decisions import rescan

    intake = _intake(args)
    report = rescan(intake, args.by, args.note, since=args.since)
    for rid, sig in report.quarantined:
        print(f"#{rid}: accepted → quarantined ({sig})")
    for rid, sig in report.findings:
        print(f"#{rid}: finding {sig} (not a virus: left as it is, for staff to look at)")
    for rid in report.missing:
        print(f"#{rid}: raw mail missing from the store: not scanned")
    print(f"{report.scanned} scanned, {report.clean} clean, {len(report.quarantined)} quarantined")
    if report.error:
        print_error(f"clamd failed ({report.error}): the rescan stopped; run it again")
        return 1
    return 0


# -- purge -----------------------------------------------------------------------------------------
@_guard
def cmd_purge(args: argparse.Namespace) -> int:
    from daemon.staff import retention as rt
    from daemon.store.db import now_utc
    from daemon.store.raw import RawStore

    if args.as_of is not None and args.apply:
        raise CliError("--as-of is for --dry-run only (a plan for a later day); --apply deletes as of now")
    config, _, sessions = _setup(args, need_rules=False)
    policy = rt.retention_from_config(config)
    now = args.as_of or now_utc()
    with sessions() as session:
        dues = rt.plan(session, policy, now)
    for klass in rt.CLASSES:
        print(f"retention {klass}: {policy.describe(klass)}")
    rows = [[str(d.record_id), d.status, d.klass, d.area, jst_stamp(d.since), jst_stamp(d.due_at)] for d in dues]
    if rows:
        print(render_table(rows, ["ID", "STATUS", "CLASS", "AREA", "SINCE (JST)", "DUE (JST)"]))
    counts = {k: sum(1 for d in dues if d.klass == k) for k in rt.CLASSES}
    summary = ", ".join(f"{k} {v}" for k, v in counts.items())
    files = len({(d.sha256, d.area) for d in dues})
    if args.dry_run:
        rt.log.info("purge", action="dry_run", count=files, counts=counts)
        print(f"would delete {files} raw file(s) of {len(dues)} record(s): {summary}")
        return 0
    done = rt.apply(sessions, RawStore(config.raw_dir, config.quarantine_dir, config.staff_group), dues,
                    by=args.by or "retention")
    print(f"deleted {files} raw file(s) of {sum(done.values())} record(s): "
          + ", ".join(f"{k} {done[k]}" for k in rt.CLASSES))
    return 0


# -- parsers ---------------------------------------------------------------------------------------
def _decision_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--by", required=True, help="who decides (goes into the event log)")
    s.add_argument("--note", required=True, help="why (goes into the event log)")


def _publication_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--include-late", action="store_true", help="include arrivals outside the window (late, early)")
    s.add_argument("--include-held", action="store_true", help="include held records' items")
    s.add_argument("--similarity", type=float, help="form-letter similarity (default [staff] "
                   "form_letter_similarity, else 0.8)")


def register(sub: Any) -> None:
    """Add `stats`, `export`, `release`, `reject`, `retry`, `rescan` and `purge` to the `intake` sub-commands."""
    s = sub.add_parser("stats", help="counts, 者/件, per day, form-letter groups")
    _publication_args(s)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_stats)

    s = sub.add_parser("export", help="one row per comment item, xlsx or csv")
    s.add_argument("--format", choices=["xlsx", "csv", "result-docx", "result-xlsx"], required=True,
                   help="xlsx/csv: one row per comment item; result-docx/result-xlsx: 「提出された意見及び考え方」 "
                   "as arranged in 整理 (public form)")
    s.add_argument("--public", action="store_true", help="the public form (R11): no personal data")
    s.add_argument("-o", "--output", help="file to write (default stdout)")
    s.add_argument("--encoding", choices=["utf-8-sig", "utf-8", "cp932"], default="utf-8-sig",
                   help="csv encoding (default utf-8-sig: UTF-8 with the BOM Excel needs)")
    _publication_args(s)
    s.add_argument("--since", type=parse_time, help="received at or after (JST if no offset)")
    s.add_argument("--until", type=parse_time, help="received at or before (JST if no offset)")
    s.add_argument("--flag")
    s.add_argument("--target", choices=TARGET_KEYS)
    s.add_argument("--kind", choices=KINDS)
    s.add_argument("--text")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("release", help="accept a rejected message after review")
    s.add_argument("id", type=int)
    _decision_args(s)
    s.set_defaults(func=cmd_release)

    s = sub.add_parser("reject", help="reject a message (e.g. spam)")
    s.add_argument("id", type=int)
    _decision_args(s)
    s.set_defaults(func=cmd_reject)

    s = sub.add_parser("retry", help="run held messages through the pipeline again now")
    s.add_argument("id", type=int, nargs="?")
    s.add_argument("--held", action="store_true", help="every held record")
    _decision_args(s)
    s.set_defaults(func=cmd_retry)

    s = sub.add_parser("rescan", help="scan stored accepted mail again with today's signatures")
    s.add_argument("--since", type=parse_time, help="only mail received at or after (JST if no offset)")
    _decision_args(s)
    s.set_defaults(func=cmd_rescan)

    s = sub.add_parser("purge", help="delete raw mail by the retention classes of the config")
    mode = s.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    mode.add_argument("--apply", action="store_true", help="delete it")
    s.add_argument("--as-of", type=parse_time, help="with --dry-run: plan as of this time (JST if no offset)")
    s.add_argument("--by", help="who runs it (event log; default 'retention')")
    s.set_defaults(func=cmd_purge)
