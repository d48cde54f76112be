"""`intake review …`: 整理 from the terminal — the same operations as the web pages 整理 and 進捗
(daemon/staff/review.py), for staff who script or check the arrangement of the result document.

    intake review list [--section ID]          rows by section: row id, state, 同旨 count, first words
    intake review progress                     rows and items per state and section, and the 者／件 line
    intake review move ROW SECTION --by WHO
    intake review merge ROW OTHER… --by WHO    put the items of OTHER rows into ROW (同旨)
    intake review split ITEM --by WHO          an item (its id in `review show`) out of its row
    intake review supersede EARLIER LATER --by WHO [--note WHY]    a corrected resend replaces EARLIER
    intake review restore EARLIER --by WHO [--note WHY]
    intake review show ROW                     members, answer, history
    intake review answer ROW --version N --by WHO [--text T|--text-file F] [--revised 有|無|none] [--state S]

Every command first brings the review up to date with the records (new items get their place and row).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from daemon.cli.common import CliError, jst_stamp, load_context, open_sessions, render_table

_STATES = {"todo": "todo", "draft": "draft", "final": "final", "未着手": "todo", "検討中": "draft", "確定": "final"}


def register(sub: Any) -> None:
    """Add `review` and its sub-commands to the `intake` sub-commands."""
    s = sub.add_parser("review", help="整理: rows of the result document, groups, supersessions, answers")
    rs = s.add_subparsers(dest="review_command", required=True)
    p = rs.add_parser("list", help="rows by section")
    p.add_argument("--section", help="a section id of [outline] (other: 「その他・全般」)")
    p.set_defaults(func=cmd_list)
    p = rs.add_parser("progress", help="rows and items per state and section")
    p.set_defaults(func=cmd_progress)
    p = rs.add_parser("show", help="one row: members, answer, history")
    p.add_argument("row", type=int)
    p.set_defaults(func=cmd_show)
    p = rs.add_parser("move", help="a row to another section")
    p.add_argument("row", type=int)
    p.add_argument("section")
    p.add_argument("--by", required=True, help="who (goes into the history)")
    p.set_defaults(func=cmd_move)
    p = rs.add_parser("merge", help="put the items of other rows into ROW (同旨)")
    p.add_argument("row", type=int)
    p.add_argument("others", type=int, nargs="+")
    p.add_argument("--by", required=True)
    p.set_defaults(func=cmd_merge)
    p = rs.add_parser("split", help="an item out of its row, into a row of its own")
    p.add_argument("item", type=int)
    p.add_argument("--by", required=True)
    p.set_defaults(func=cmd_split)
    p = rs.add_parser("supersede", help="record EARLIER is replaced by LATER (a corrected resend)")
    p.add_argument("earlier", type=int)
    p.add_argument("later", type=int)
    p.add_argument("--by", required=True)
    p.add_argument("--note", default="")
    p.set_defaults(func=cmd_supersede)
    p = rs.add_parser("restore", help="undo a supersession: EARLIER counts again")
    p.add_argument("earlier", type=int)
    p.add_argument("--by", required=True)
    p.add_argument("--note", default="")
    p.set_defaults(func=cmd_restore)
    p = rs.add_parser("answer", help="save a row's 考え方 (refused if someone saved it since --version)")
    p.add_argument("row", type=int)
    p.add_argument("--version", type=int, required=True, help="the version `review show` printed")
    p.add_argument("--by", required=True)
    p.add_argument("--text", help="the answer")
    p.add_argument("--text-file", help="read the answer from this UTF-8 file")
    p.add_argument("--revised", choices=["有", "無", "none"], help="修正の有無 (none: not decided)")
    p.add_argument("--state", choices=sorted(_STATES), help="未着手|検討中|確定 (or todo|draft|final)")
    p.set_defaults(func=cmd_answer)


def _session(args: argparse.Namespace) -> tuple[Any, Any]:
    from daemon.staff import review

    config, rules = load_context(args)
    session = open_sessions(config)()
    review.sync(session, rules, getattr(args, "by", None) or "intake")
    session.commit()
    return rules, session


def _do(args: argparse.Namespace, op: Any) -> int:
    from daemon.staff.review import ReviewError

    rules, session = _session(args)
    with session:
        try:
            message = op(rules, session)
            session.commit()
        except ReviewError as exc:
            session.rollback()
            raise CliError(str(exc)) from None
    print(message)
    return 0


def _excerpt(text: str, n: int = 40) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


def cmd_list(args: argparse.Namespace) -> int:
    from daemon.staff.review import board

    rules, session = _session(args)
    with session:
        b = board(session, rules)
    known = [sid for sid, _ in rules.outline.order]
    if args.section and args.section not in known:
        raise CliError(f"--section: {args.section!r} is not in [outline] (known: {', '.join(known)})")
    out: list[str] = []
    for sid, title, rows in b.sections:
        if args.section and sid != args.section:
            continue
        out.append(f"{sid}  {title}  ({len(rows)} row(s))")
        table = [[str(r.group.id), r.state_label, str(len(r.members)), ",".join(str(m.item.record_id)
                  for m in r.members[:5]) + ("…" if len(r.members) > 5 else ""), _excerpt(r.first.item.text)]
                 for r in rows]
        if table:
            out.append(render_table(table, ["ROW", "STATE", "ITEMS", "RECORDS", "TEXT"]))
        out.append("")
    print("\n".join(out).rstrip())
    return 0


def cmd_progress(args: argparse.Namespace) -> int:
    from daemon.staff.results import document
    from daemon.staff.review import board
    from daemon.store.review import STATES

    rules, session = _session(args)
    with session:
        b = board(session, rules)
    table = []
    totals = [0, 0, 0, 0, 0]
    for sid, _title, counts, items in b.progress():
        cells = [counts.get(s, 0) for s in STATES] + [sum(counts.values()), items]
        totals = [a + c for a, c in zip(totals, cells, strict=True)]
        table.append([sid, *map(str, cells)])
    table.append(["total", *map(str, totals)])
    print(render_table(table, ["SECTION", *(v for v in STATES.values()), "ROWS", "ITEMS"]))
    print(document(b, rules).counts_line)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from daemon.staff.review import board, history

    rules, session = _session(args)
    with session:
        b = board(session, rules)
        row = b.row(args.row)
        if row is None:
            raise CliError(f"row {args.row}: not on the board (no such row, or none of its items counts now)")
        events = history(session, args.row)
    g = row.group
    out = [f"row {g.id}  section {g.section} ({rules.outline.title_of(g.section)})  state {row.state_label}  "
           f"version {g.version}", ""]
    for m in row.members:
        it = m.item
        out.append(f"item {m.item_id}  record {it.record_id} #{it.index}  {jst_stamp(it.received_at)}  "
                   f"{m.staff_label or '(no name)'}")
        out.append("  " + it.text.replace("\n", "\n  "))
    out += ["", f"考え方 (修正 {g.revised or '未選択'}):", "  " + (g.answer or "(none yet)").replace("\n", "\n  "), ""]
    out.append("history:")
    for e in events:
        out.append(f"  {jst_stamp(e.at)}  {e.actor}  {e.action}")
    print("\n".join(out))
    return 0


def cmd_move(args: argparse.Namespace) -> int:
    from daemon.staff.review import move

    def op(rules: Any, session: Any) -> str:
        move(session, rules, args.row, args.section, args.by)
        return f"row {args.row} is now in {args.section}"

    return _do(args, op)


def cmd_merge(args: argparse.Namespace) -> int:
    from daemon.staff.review import merge

    def op(_rules: Any, session: Any) -> str:
        return f"{merge(session, args.row, args.others, args.by)} item(s) moved into row {args.row}"

    return _do(args, op)


def cmd_split(args: argparse.Namespace) -> int:
    from daemon.staff.review import split

    def op(_rules: Any, session: Any) -> str:
        return f"item {args.item} is now row {split(session, args.item, args.by)}"

    return _do(args, op)


def cmd_supersede(args: argparse.Namespace) -> int:
    from daemon.staff.review import supersede

    def op(_rules: Any, session: Any) -> str:
        supersede(session, args.earlier, args.later, args.by, args.note)
        return f"record {args.earlier} is replaced by record {args.later}: it no longer counts"

    return _do(args, op)


def cmd_restore(args: argparse.Namespace) -> int:
    from daemon.staff.review import restore

    def op(_rules: Any, session: Any) -> str:
        restore(session, args.earlier, args.by, args.note)
        return f"record {args.earlier} counts again"

    return _do(args, op)


def cmd_answer(args: argparse.Namespace) -> int:
    from daemon.staff.review import StaleAnswer, save_answer
    from daemon.store.review import ReviewGroup

    if (args.text is None) == (args.text_file is None):
        raise CliError("give the answer with --text or --text-file (one of them)")
    if args.text_file:
        try:
            text = Path(args.text_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"--text-file: cannot read {args.text_file} ({exc.__class__.__name__})") from None
    else:
        text = args.text

    def op(_rules: Any, session: Any) -> str:
        group = session.get(ReviewGroup, args.row)
        if group is None:
            raise CliError(f"row {args.row}: no such row")
        revised = group.revised if args.revised is None else (None if args.revised == "none" else args.revised)
        state = _STATES[args.state] if args.state else group.state
        try:
            version = save_answer(session, args.row, text, revised, state, args.version, args.by)
        except StaleAnswer as exc:
            now = exc.current
            print(f"stored now (version {now.version}, by {now.answered_by}):\n{now.answer}", file=sys.stderr)
            raise CliError(f"row {args.row}: saved by {now.answered_by} since version {args.version}; "
                           f"read it (intake review show {args.row}) and save on version {now.version}") from None
        return f"row {args.row}: answer saved (version {version})"

    return _do(args, op)
