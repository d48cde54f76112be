"""The largest hostile cases of issue 16, each through `intake ingest` in its own process, against a real clamd
and a fresh SQLite: wall time, status and reasons, and the memory of the process tree (the ingest process, the
extraction forkserver and its children), sampled from /proc every 50 ms.

    python -m bench.hostile            # prints a Markdown table for BENCHMARKS.md ("Hostile input")
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.procmon import TreeMonitor
from devkit.clamd import Clamd
from fuzz import hostile

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024

CASES: list[tuple[str, Callable[[], bytes]]] = [
    ("20 MiB single-line text body", lambda: hostile.single_line_text(20 * MIB)),
    ("xlsx of 1,048,576 rows", lambda: hostile.with_attachment(
        "意見.xlsx", hostile.big_xlsx(1_048_576),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")),
    ("HTML of 96,000 unclosed tags", lambda: hostile.unclosed_tags_html(96_000)),
    ("10,000 small attachments", lambda: hostile.many_attachments(10_000)),
    ("900 small attachments (under the part limit)", lambda: hostile.many_attachments(900)),
    ("5,000 nested multiparts", lambda: hostile.nested_multipart(5000)),
    ("100,000 header fields", lambda: hostile.many_header_fields(100_000)),
    ("5 MB header line", lambda: hostile.long_header_line(5_000_000)),
]


def run_case(name: str, raw: bytes, env: dict[str, str], tmp: Path) -> dict[str, object]:
    path = tmp / "case.eml"
    path.write_bytes(raw)
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "--log-level", "INFO", "ingest", "--json",
                             str(path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    monitor = TreeMonitor(proc.pid, interval=0.05).start()
    out, err = proc.communicate(timeout=900)
    seconds = time.monotonic() - start
    monitor.stop()
    rec = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
    errors = sorted({t["error"] for t in rec.get("texts", []) if t.get("error")})
    stages: dict[str, float] = {}
    for line in err.decode().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "stage":
            stages[event["stage"]] = stages.get(event["stage"], 0.0) + event["duration_ms"] / 1000
    clamd_s = stages.get("scan", 0.0) + stages.get("scan_attachments", 0.0)
    ours_s = sum(stages.values()) - clamd_s
    return {"case": name, "bytes": len(raw), "seconds": round(seconds, 2), "status": rec.get("status"),
            "reasons": rec.get("reasons"), "errors": errors, "rc": proc.returncode,
            "tree_mb": round(monitor.peak_tree_rss_kb / 1024), "main_hwm_mb": round(monitor.main_hwm_kb / 1024),
            "child_hwm_mb": round(monitor.max_child_hwm_kb / 1024), "stderr_lines": len(err.splitlines()),
            "stages_s": round(ours_s, 2), "clamd_s": round(clamd_s, 2),
            "slowest": max(stages, key=lambda k: stages[k]) if stages else None}


def main() -> None:
    only = sys.argv[1:]  # substrings of case names to run (default: all)
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp_s:
        tmp = Path(tmp_s)
        clamd = Clamd(tmp / "clamd")
        clamd.start()
        try:
            rows = []
            for name, build in CASES:
                if only and not any(o in name for o in only):
                    continue
                data = tmp / f"data-{len(rows)}"
                env = {**os.environ, "INTAKE_DATABASE_URL": f"sqlite:///{data}/intake.db",
                       "INTAKE_DATA_DIR": str(data), "INTAKE_RULES": str(ROOT / "rules" / "consultation.toml"),
                       "INTAKE_CLAMD": clamd.url, "INTAKE_CONFIG": "/dev/null", "PYTHONPATH": str(ROOT)}
                data.mkdir()
                subprocess.run([sys.executable, "-m", "daemon.cli", "db", "upgrade"], env=env, check=True,
                               capture_output=True)
                row = run_case(name, build(), env, tmp)
                rows.append(row)
                print(json.dumps(row, ensure_ascii=False), file=sys.stderr, flush=True)
        finally:
            clamd.stop()
    print("| case | size | `intake ingest` wall | stages (ours) / clamd | status, reasons, text errors "
          "| peak RSS: tree / ingest / largest child |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        what = f"{r['status']} {', '.join(r['reasons'] or [])}" + (f"; {', '.join(r['errors'])}" if r["errors"] else "")
        print(f"| {r['case']} | {int(r['bytes']) / MIB:.1f} MiB | {r['seconds']} s | "
              f"{r['stages_s']} s / {r['clamd_s']} s | {what} | "
              f"{r['tree_mb']} / {r['main_hwm_mb']} / {r['child_hwm_mb']} MB |")


if __name__ == "__main__":
    main()
