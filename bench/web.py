"""`python -m bench.web` (or `python -m bench web`): the web application's 受付一覧 and search on 100,000 records.

Fills a fresh SQLite file and/or a fresh PostgreSQL database (migrated, so the search triggers build the
documents as the daemon's writes would) with records in the issue's mix: 1–3 comment items of Japanese text,
submitters, subjects, statuses, reasons and flags, arrivals over the window; 1 % mention 生成AI. Then signs in
and times, in process (Starlette's TestClient: the server's work plus a negligible in-process transport),
the log page at random pages, and searches (a post and the page it leads to): a word in 1 % of the records,
two words, a word in most records, a rare word, words of two characters (common, rare, in no record: a
trigram index cannot answer them; migration 0009 adds an index that can), a word of one character, and a filter
with a word. p50 and p95 of each, per database, written to BENCHMARKS.md between the `bench web` markers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from daemon.config import DEFAULT_RULES, Config
from daemon.rules import load_rules
from daemon.staff import accounts
from daemon.store import migrate
from daemon.store import users as _users  # noqa: F401  (the users table in the metadata)
from daemon.store.db import Message, make_engine, make_sessionmaker

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
START = dt.datetime(2025, 12, 26, tzinfo=dt.timezone(dt.timedelta(hours=9)))
PHRASES = [
    "AIの脆弱性対策について、具体例を追加すべきである。", "用語の定義が曖昧であり、明確化を求める。",
    "中小企業向けの簡易版を用意してほしい。", "学習データの管理に関する記載を充実させるべき。",
    "リスク評価の手順を段階的に示してほしい。", "プロンプトインジェクションへの対策を明記すべきである。",
    "外部委託先の管理について言及がない。", "運用時の監視体制について補足が必要である。",
    "国際的な基準との整合性を確認すべき。", "安全性の検証方法を具体的に記載してほしい。",
]
NAMES = ["山田 太郎", "佐藤 花子", "鈴木 一郎", "高橋 美咲", "田中 健", "渡辺 由美", "伊藤 翔", "中村 愛"]
ORGS = ["株式会社サンプル", "一般社団法人AI推進協会", "特定非営利活動法人情報安全", "ABC株式会社"]
STATUS_MIX = [("accepted", 90), ("rejected", 5), ("held", 2), ("quarantined", 1), ("duplicate", 2)]


def make_row(n: int, rng: random.Random) -> dict[str, Any]:
    status = rng.choices([s for s, _ in STATUS_MIX], [w for _, w in STATUS_MIX])[0]
    items = []
    for _ in range(rng.randint(1, 3)):
        body = "".join(rng.choice(PHRASES) for _ in range(rng.randint(3, 12)))
        if rng.random() < 0.01:
            body = "生成AIの" + body
        target = rng.choice(["main", "annex"])
        page = f"P.{rng.randint(1, 60)}"
        items.append({"text": body, "targets": [target], "pages": [page], "chars": len(body),
                      "summary": None, "location": f"{'本編' if target == 'main' else '別添'} {page}"})
    org = rng.random() < 0.15
    submitter = {"kind": "organization" if org else "individual", "name": None if org else rng.choice(NAMES),
                 "organization": rng.choice(ORGS) if org else None, "anonymous": False}
    reasons = ["attachment_not_allowed"] if status == "rejected" else (
        ["virus"] if status == "quarantined" else (["scan_unavailable"] if status == "held" else []))
    flags = rng.sample(["page_missing", "missing_address", "summary_missing"], k=rng.randint(0, 1))
    when = START + dt.timedelta(seconds=rng.randint(0, 34 * 86400))
    return {
        "status": status, "reasons": reasons, "flags": flags, "received_at": when, "received_source": "bench",
        "size": rng.randint(500, 60000), "sha256": f"{n:064x}", "content_id": f"{n:064x}", "source": "bench",
        "raw_area": "raw", "attempts": 0, "from_address": f"u{n}@example.jp",
        "subject": rng.choice(["意見提出", "ガイドライン案への意見", "パブリックコメント", "意見書の送付"]),
        "defects": [], "result": {"comments": items, "submitter": submitter, "texts": []},
    }


def fill(url: str, count: int, seed: int = 7) -> float:
    migrate.upgrade(url)
    engine = make_engine(url)
    rng = random.Random(seed)
    started = time.monotonic()
    batch = 2000
    with engine.begin() as conn:
        for first in range(0, count, batch):
            conn.execute(insert(Message), [make_row(n, rng) for n in range(first, min(count, first + batch))])
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    engine.dispose()
    return time.monotonic() - started


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1), "p95_ms": round(p95 * 1000, 1), "n": len(ordered)}


def measure(url: str, data_dir: Path, rounds: int) -> dict[str, Any]:
    import dataclasses

    from starlette.testclient import TestClient

    from daemon.web.app import create_app
    from daemon.web.settings import WebSettings

    config = Config(data_dir=data_dir, database_url=url, rules_path=DEFAULT_RULES)
    sessions = make_sessionmaker(make_engine(url))
    with sessions.begin() as session:
        accounts.add(session, "bench", "reviewer", "bench password 123")
    settings = dataclasses.replace(WebSettings.from_config(config), cookie_secure=False)
    app = create_app(config, load_rules(DEFAULT_RULES), settings, sessions)
    client = TestClient(app)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert token
    r = client.post("/login", data={"name": "bench", "password": "bench password 123", "csrf_token": token[1]})
    assert r.status_code == 200, r.status_code
    csrf = token[1]
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', r.text)[1]  # type: ignore[index]
    # Signing in opens the dashboard, which starts the 者/件 count in a background thread of this process: the
    # pages are timed after it (it took 400 ms off a few searches' p95 through the GIL); its own time is reported.
    from daemon.web.dashboard import wait_for_tally

    t0 = time.perf_counter()
    wait_for_tally(600)
    tally_s = time.perf_counter() - t0
    rng = random.Random(1)
    results: dict[str, Any] = {}

    def timed(label: str, call: Any) -> None:
        call()  # warm: the first call of a statement pays its planning and the page cache
        samples = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            resp = call()
            samples.append(time.perf_counter() - t0)
            assert resp.status_code == 200, (label, resp.status_code)
        total = re.search(r'<p class="total">(\d+) 件', resp.text)
        results[label] = {**_percentiles(samples), "hits": int(total[1]) if total else None}

    client.post("/records", data={"reset": "1", "csrf_token": csrf})
    timed("log page (random page, newest first)", lambda: client.get(f"/records?page={rng.randint(1, 1800)}"))
    timed("log page 1", lambda: client.get("/records"))
    searches = [
        ("search 生成AI (1 % of records)", {"q": "生成AI"}),
        ("search 生成AI 安全性 (two words)", {"q": "生成AI 安全性"}),
        ("search 脆弱性 (most records)", {"q": "脆弱性"}),
        ("search u777@ (one sender: no hit, mail is not searched)", {"q": "u777@example"}),
        ("search AI (two characters)", {"q": "AI"}),
        ("search 生成 (two characters, 2 % of records)", {"q": "生成"}),
        ("search 暗号 (two characters, in no record)", {"q": "暗号"}),
        ("search 案 (one character)", {"q": "案"}),
        ("search 生成AI + status rejected + 別添", {"q": "生成AI", "status": "rejected", "target": "annex"}),
        ("filter kind organization, flag page_missing", {"kind": "organization", "flag": "page_missing"}),
    ]
    for label, form in searches:
        timed(label, lambda form=form: client.post("/records", data={**form, "csrf_token": csrf}))
    client.post("/records", data={"reset": "1", "csrf_token": csrf})
    # The 者/件 count as a row of its own: the wall time of the dashboard's background count after sign-in.
    results["者/件 count (dashboard, background thread)"] = {"p50_ms": round(tally_s * 1000, 1),
                                                           "p95_ms": round(tally_s * 1000, 1), "n": 1, "hits": None}
    return results


def render(all_results: dict[str, Any], count: int) -> str:
    lines = ["<!-- bench web: begin (written by python -m bench.web) -->",
             f"## Web application: 受付一覧 and search on {count:,} records (`python -m bench.web`)", "",
             "Server time per request in process (Starlette TestClient), after one warm-up call; a search is the "
             "POST of the form and the page it leads to. Targets (issue 17): p95 under 300 ms on PostgreSQL and "
             "under 500 ms on SQLite.", ""]
    for backend, res in all_results.items():
        lines.append(f"**{backend}** (filled in {res['fill_s']:.0f} s, triggers building the search documents)")
        lines.append("")
        lines.append("| request | hits | p50 ms | p95 ms | n |")
        lines.append("|---|---|---|---|---|")
        for label, r in res["requests"].items():
            hits = "" if r["hits"] is None else f"{r['hits']:,}"
            lines.append(f"| {label} | {hits} | {r['p50_ms']} | {r['p95_ms']} | {r['n']} |")
        lines.append("")
    lines.append("<!-- bench web: end -->")
    return "\n".join(lines) + "\n"


def write_report(path: Path, section: str) -> None:
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    pattern = re.compile(r"<!-- bench web: begin.*?<!-- bench web: end -->\n", re.S)
    new = pattern.sub(lambda _m: section, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + section
    path.write_text(new, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=40, help="timed requests per kind (default 40)")
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--postgres-url", default=PG_ADMIN_URL)
    p.add_argument("--output", default="BENCHMARKS.md")
    args = p.parse_args(argv)
    from daemon import logs

    logs.configure("ERROR")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        if args.db in ("sqlite", "both"):
            url = f"sqlite:///{Path(tmp) / 'web.db'}"
            fill_s = fill(url, args.records)
            results["SQLite"] = {"fill_s": fill_s, "requests": measure(url, Path(tmp) / "sqlite", args.rounds)}
            print(json.dumps(results["SQLite"], ensure_ascii=False, indent=1), file=sys.stderr)
        if args.db in ("postgres", "both"):
            name = f"intake_bench_web_{uuid.uuid4().hex[:8]}"
            admin = create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            url = make_url(args.postgres_url).set(database=name).render_as_string(hide_password=False)
            try:
                fill_s = fill(url, args.records)
                results["PostgreSQL"] = {"fill_s": fill_s,
                                         "requests": measure(url, Path(tmp) / "pg", args.rounds)}
                print(json.dumps(results["PostgreSQL"], ensure_ascii=False, indent=1), file=sys.stderr)
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()
    write_report(Path(args.output), render(results, args.records))
    print(f"bench web: written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
